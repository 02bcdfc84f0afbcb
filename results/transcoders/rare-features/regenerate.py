"""Are the features the revival lifted readable? Layer by layer, features of the shipped set in
three groups, each labelled from its top contexts on held-out text:

    .venv/bin/python results/transcoders/rare-features/regenerate.py --full FULL --lifted LIFTED [--layers 6 12]

``FULL``: the recipe's full run before its revival chunks (``gemma-3-270m-recipe-full``);
``LIFTED``: the shipped set after them (``gemma-3-270m-recipe-lifted``). On ``--windows``
windows of 64 tokens of the mix's held-out text (positions past the first), per layer:

* **lifted**: never fired in ``FULL`` on these windows, fires at least ``--min-fires`` times in
  ``LIFTED`` (what the revival brought back);
* **rare**: fired in ``FULL`` too, fires in ``LIFTED`` on fewer than one token in 1,000 (and at
  least ``--min-fires`` times);
* **common**: fires in ``LIFTED`` on at least one token in 100.

The groups are drawn independently, so a lifted feature that now fires often could in principle be
drawn as both lifted and common (none is in the stored sample; the README's test checks that).
A feature that fires fewer than ``--contexts`` times shows fewer contexts, which raises the lowest
agreement it can have (1 over its contexts).

``--sample`` features drawn from each group (seeded), each with its ``--contexts`` top contexts
(:func:`scrying.transcoders.label_features`). A proxy for readability, no judge: **token
agreement**, the share of the top contexts whose activating token (stripped, lower-cased) is
their most common one (1: one token; low: many different tokens, which may still share a
meaning). Writes ``features.json`` (every sampled feature: group, fires, agreement, label,
contexts) and ``summary.md`` (per layer and group: features in the group, sampled, mean fires per
1,000 tokens, mean agreement with its 95% bootstrap interval over the sampled features) beside
this script; ``--summary-only`` rewrites ``summary.md`` from ``features.json`` (no model).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def agreement(contexts: list[dict]) -> float | None:
    """Share of ``contexts`` whose activating token (stripped, lower-cased) is their most common one."""
    tokens = [c["tokens"][c["at"]].strip().lower() for c in contexts]
    return Counter(tokens).most_common(1)[0][1] / len(tokens) if tokens else None


def summary_markdown(stored: dict) -> str:
    """``summary.md``'s text from ``features.json``'s content: per layer and group, the mean token
    agreement of its sampled features with a 95% percentile-bootstrap interval."""
    from scrying.stats import BootstrapConfig, interval

    lines = ["| layer | group | features in it | sampled | fires per 1,000 tokens (sampled, mean) | token agreement: mean [95% interval] |",
             "|---|---|---|---|---|---|"]
    for s in stored["summary"]:
        scores = [r["agreement"] for r in stored["features"]
                  if (r["layer"], r["group"]) == (s["layer"], s["group"]) and r["agreement"] is not None]
        if scores:
            low, high = interval(torch.tensor(scores, dtype=torch.float64), BootstrapConfig())
            cell = f"{sum(scores) / len(scores):.2f} [{float(low):.2f}, {float(high):.2f}]"
        else:
            cell = "—"
        lines.append(f"| {s['layer']} | {s['group']} | {s['features']:,} | {s['sampled']} | {s['fires_per_1000']:.2f} | {cell} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", type=Path, required=True)
    parser.add_argument("--lifted", type=Path, required=True)
    parser.add_argument("--layers", type=int, nargs="+", default=[6, 12])
    parser.add_argument("--windows", type=int, default=1024)
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--contexts", type=int, default=10)
    parser.add_argument("--min-fires", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--summary-only", action="store_true", help="rewrite summary.md from features.json")
    args = parser.parse_args()
    if args.summary_only:
        (HERE / "summary.md").write_text(summary_markdown(json.loads((HERE / "features.json").read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from scrying.models import default_cache_dir, load_model
    from scrying.models.adapter import final_resid
    from scrying.sites import recorded
    from scrying.transcoders import label_features, read_transcoders
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.labels import LabelConfig
    from scrying.transcoders.train import first_windows

    model = load_model("gemma-3-270m")
    full, lifted = read_transcoders(args.full), read_transcoders(args.lifted)
    mix = build_mixed_corpus(Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()), CorpusMixConfig())
    windows = first_windows(model, read_texts([mix.heldout]), 64, args.windows, what=str(mix.heldout))
    counts = {name: {ly: torch.zeros(s.transcoders[ly].W_enc.shape[0], dtype=torch.long) for ly in args.layers}
              for name, s in (("full", full), ("lifted", lifted))}
    sites = [lifted.input_site(ly) for ly in args.layers]
    with torch.no_grad():
        for start in range(0, len(windows), 32):
            with recorded(model, sites) as store:
                final_resid(model, windows[start : start + 32])
            for ly, site in zip(args.layers, sites, strict=True):
                x = store[site][:, 1:].flatten(0, 1)
                for name, s in (("full", full), ("lifted", lifted)):
                    tc = s.transcoders[ly]
                    counts[name][ly] += (tc.mask(tc.pre_activations(x.to(tc.dtype))) > 0).sum(0)
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    gen = torch.Generator().manual_seed(args.seed)
    rows, summary = [], []
    for ly in args.layers:
        before, after = counts["full"][ly], counts["lifted"][ly]
        groups = {
            "lifted": (before == 0) & (after >= args.min_fires),
            "rare": (before > 0) & (after >= args.min_fires) & (after * 1000 < tokens),
            "common": after * 100 >= tokens,
        }
        for group, members in groups.items():
            index = members.nonzero().flatten()
            chosen = index[torch.randperm(len(index), generator=gen)[: args.sample]].sort().values.tolist()
            labels = label_features(model, lifted, [(ly, i) for i in chosen], windows, LabelConfig(top_contexts=args.contexts))
            picked = []
            for i in chosen:
                found = labels[(ly, i)]
                row = {"layer": ly, "feature": i, "group": group, "fires": int(after[i]), "fires_in_full": int(before[i]),
                       "agreement": agreement(found.contexts), "label": found.label,
                       "contexts": ["".join(c["tokens"][: c["at"]]) + "[[" + c["tokens"][c["at"]] + "]]" + "".join(c["tokens"][c["at"] + 1 :])
                                    for c in found.contexts]}
                picked.append(row)
            rows += picked
            scores = [r["agreement"] for r in picked if r["agreement"] is not None]
            summary.append({"layer": ly, "group": group, "features": len(index), "sampled": len(picked),
                            "fires_per_1000": 1000 * sum(r["fires"] for r in picked) / max(1, len(picked)) / tokens,
                            "agreement": sum(scores) / len(scores) if scores else None})
            logging.info("layer %d %s: %d features, agreement %s", ly, group, len(index), summary[-1]["agreement"])
    stored = {"tokens": tokens, "windows": args.windows, "features": rows, "summary": summary}
    (HERE / "features.json").write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n")
    (HERE / "summary.md").write_text(summary_markdown(stored))


if __name__ == "__main__":
    main()
