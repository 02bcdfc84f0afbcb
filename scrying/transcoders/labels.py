"""Feature labels, offline: top-activating contexts and the tokens a feature's decoder promotes.

Phases of :func:`label_features` (for the features asked for, e.g. a graph's feature nodes):

1. **Contexts** — encode the MLP inputs of ``windows`` corpus windows (one forward pass per
   batch, every requested layer at once; :func:`scrying.contexts.top_contexts`) and keep, per
   feature, the ``top_contexts`` largest activations with the ``context_tokens`` tokens ending
   at the activating one and ``after_tokens`` after it, each token with the feature's
   activation on it (a page's feature card marks the activating token and shades the rest).
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
from scrying.contexts import ContextConfig, top_contexts
from scrying.errors import ConfigError
from scrying.models.adapter import mlp_output_logits
from scrying.transcoders.file_checks import LABELS_SCHEMA_VERSION as SCHEMA_VERSION
from scrying.transcoders.file_checks import labels_path, read_label_file
from scrying.transcoders.files import TranscoderSet


@dataclass(frozen=True, kw_only=True)
class LabelConfig:
    top_contexts: int = 5
    context_tokens: int = 8  # tokens shown up to and including the activating one
    after_tokens: int = 2  # tokens shown after it
    top_tokens: int = 5
    batch: int = 16

    def __post_init__(self) -> None:
        for name in ("top_contexts", "context_tokens", "top_tokens", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LabelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.after_tokens < 0:
            raise ConfigError(f"LabelConfig.after_tokens must be >= 0, got {self.after_tokens}")

    def contexts(self) -> ContextConfig:
        return ContextConfig(k=self.top_contexts, before=self.context_tokens - 1, after=self.after_tokens, batch=self.batch)


@dataclass(frozen=True)
class FeatureLabel:
    label: str
    contexts: list[dict]  # Context.to_json(): activation, tokens, values, at (the activating token)
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
    columns = [(ly, j) for ly in layers for j in range(len(wanted[ly]))]

    def read(store: dict) -> Tensor:
        parts = []
        for ly in layers:
            tc = tset.transcoders[ly]
            parts.append(tc.encode(store[tset.input_site(ly)].to(tc.dtype))[..., wanted[ly]])
        return torch.cat(parts, dim=-1)

    found = top_contexts(model, windows, [tset.input_site(ly) for ly in layers], read, len(columns), config.contexts())
    found_at = dict(zip(columns, found, strict=True))
    out: dict[tuple[int, int], FeatureLabel] = {}
    decode = model.tokenizer.decode
    for ly in layers:
        tc = tset.transcoders[ly]
        logits = mlp_output_logits(model, ly, tc.W_dec[wanted[ly]].detach())
        up = logits.topk(config.top_tokens, dim=-1).indices
        down = (-logits).topk(config.top_tokens, dim=-1).indices
        for j, index in enumerate(wanted[ly].tolist()):
            contexts = found_at[(ly, j)]
            tokens = [c.tokens[c.at] for c in contexts]
            promoted = [decode([t]) for t in up[j].tolist()]
            suppressed = [decode([t]) for t in down[j].tolist()]
            head = f"{Counter(tokens).most_common(1)[0][0]!r} ctx" if tokens else "inactive"
            label = f"{head} → " + " ".join(f"+{t.strip() or repr(t)}" for t in promoted[:2])
            out[(ly, index)] = FeatureLabel(label, [c.to_json() for c in contexts], promoted, suppressed)
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


def read_cards(directory: str | Path) -> dict[tuple[int, int], dict]:
    """``(layer, index) -> {contexts, promoted, suppressed}`` from ``labels.json`` (empty when there
    is none): what a graph page's feature card shows. A schema-1 file's contexts (text only, no
    activating token) are shown as text with nothing highlighted."""
    return {key: {k: value.get(k, []) for k in ("contexts", "promoted", "suppressed")} for key, value in read_label_file(labels_path(directory)).items()}


def read_labels(directory: str | Path) -> dict[tuple[int, int], str]:
    """``(layer, index) -> label`` from ``labels.json`` beside the transcoders (empty when there
    is none); a malformed file is an ``InvalidInputError`` naming it and the key."""
    return {key: value["label"] for key, value in read_label_file(labels_path(directory)).items()}
