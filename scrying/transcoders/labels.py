"""Feature labels, offline: top-activating contexts and the tokens a feature's decoder promotes.

Phases of :func:`label_features` (for the features asked for, e.g. a graph's feature nodes):

1. **Contexts** — encode the MLP inputs of ``windows`` corpus windows (one forward pass per
   batch, every requested layer at once) and keep, per feature, the ``top_contexts`` largest
   activations with the ``context_tokens`` tokens ending at the activating one.
2. **Tokens** — each decoder row through the MLP post-norm gain, the final norm and the
   unembedding (:func:`scrying.models.adapter.mlp_output_logits`): the most promoted and most
   suppressed tokens (the "logit lens" of a feature, as Neuronpedia shows beside its contexts).
3. **Label** — ``"'tok' ctx → +A +B"``: the token most often at the top contexts, then the top
   promoted tokens; stored in ``labels.json`` beside the transcoders (merged with what is there)
   and read back by :class:`~scrying.transcoders.basis.TranscoderBasis` for node labels.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from scrying.axes import Int, Model, Tensor
from scrying.errors import ConfigError
from scrying.models.adapter import final_resid, mlp_output_logits
from scrying.sites import recorded
from scrying.transcoders.file_checks import LABELS_SCHEMA_VERSION as SCHEMA_VERSION
from scrying.transcoders.file_checks import labels_path, read_label_file
from scrying.transcoders.files import TranscoderSet


@dataclass(frozen=True, kw_only=True)
class LabelConfig:
    top_contexts: int = 5
    context_tokens: int = 8
    top_tokens: int = 5
    batch: int = 16

    def __post_init__(self) -> None:
        for name in ("top_contexts", "context_tokens", "top_tokens", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LabelConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class FeatureLabel:
    label: str
    contexts: list[tuple[float, str]]  # (activation, text ending at the activating token)
    promoted: list[str]
    suppressed: list[str]


@torch.no_grad()
def label_features(
    model: Model,
    tset: TranscoderSet,
    features: list[tuple[int, int]],
    windows: Int[Tensor, "batch seq"],
    config: LabelConfig | None = None,
) -> dict[tuple[int, int], FeatureLabel]:
    """Labels of ``(layer, index)`` features from ``windows`` (see the module docstring)."""
    config = config or LabelConfig()
    if not features:
        return {}
    for layer, index in features:
        tset.check_feature(layer, index)
    layers = sorted({ly for ly, _ in features})
    wanted = {ly: torch.tensor([i for lx, i in features if lx == ly]) for ly in layers}
    best = {ly: (torch.full((0, len(wanted[ly])), -1.0, dtype=torch.float64), torch.zeros(0, len(wanted[ly]), dtype=torch.long)) for ly in layers}
    seq = windows.shape[1]
    for start in range(0, windows.shape[0], config.batch):
        rows = windows[start : start + config.batch]
        with recorded(model, [tset.input_site(ly) for ly in layers]) as store:
            final_resid(model, rows)
        for ly in layers:
            tc = tset.transcoders[ly]
            x = store[tset.input_site(ly)].to(tc.dtype)
            acts = tc.encode(x)[..., wanted[ly]].double()  # batch seq wanted
            acts[:, 0] = -1.0  # BOS, as in training
            flat = acts.flatten(0, 1)
            where = torch.arange(flat.shape[0]) + start * seq  # global (window * seq + pos)
            values = torch.cat([best[ly][0], flat])
            places = torch.cat([best[ly][1], where[:, None].expand(-1, flat.shape[1])])
            k = min(config.top_contexts, values.shape[0])
            top = values.topk(k, dim=0)
            best[ly] = (top.values, places.gather(0, top.indices))
    out: dict[tuple[int, int], FeatureLabel] = {}
    decode = model.tokenizer.decode
    for ly in layers:
        tc = tset.transcoders[ly]
        logits = mlp_output_logits(model, ly, tc.W_dec[wanted[ly]].detach())
        up = logits.topk(config.top_tokens, dim=-1).indices
        down = (-logits).topk(config.top_tokens, dim=-1).indices
        for j, index in enumerate(wanted[ly].tolist()):
            contexts, tokens = [], []
            for value, place in zip(best[ly][0][:, j].tolist(), best[ly][1][:, j].tolist(), strict=True):
                if value <= 0:
                    continue
                w, p = divmod(place, seq)
                ids = windows[w, max(1, p - config.context_tokens + 1) : p + 1].tolist()
                contexts.append((value, decode(ids)))
                tokens.append(decode([int(windows[w, p])]))
            promoted = [decode([t]) for t in up[j].tolist()]
            suppressed = [decode([t]) for t in down[j].tolist()]
            head = f"{Counter(tokens).most_common(1)[0][0]!r} ctx" if tokens else "inactive"
            label = f"{head} → " + " ".join(f"+{t.strip() or repr(t)}" for t in promoted[:2])
            out[(ly, index)] = FeatureLabel(label, contexts, promoted, suppressed)
    return out


def write_labels(directory: str | Path, labels: dict[tuple[int, int], FeatureLabel]) -> Path:
    """Merge ``labels`` into ``labels.json`` beside the transcoders; returns its path."""
    path = labels_path(directory)
    features = {f"{layer}:{index}": value for (layer, index), value in read_label_file(path).items()}
    for (layer, index), label in labels.items():
        features[f"{layer}:{index}"] = asdict(label)
    data = {"schema_version": SCHEMA_VERSION, "features": features}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def read_labels(directory: str | Path) -> dict[tuple[int, int], str]:
    """``(layer, index) -> label`` from ``labels.json`` beside the transcoders (empty when there
    is none); a malformed file is an ``InvalidInputError`` naming it and the key."""
    return {key: value["label"] for key, value in read_label_file(labels_path(directory)).items()}
