"""Issue 21's checks of a recipe-trained transcoder set on Gemma 3 270M, in one command.

    .venv/bin/python results/transcoders/gemma-3-270m-recipe/regenerate.py --transcoders DIR [--out FOLDER]

``DIR``: the set (``scrying transcoders train --preset recipe --out DIR``, or a snapshot of a
run in progress, ``scrying transcoders export RUN --out DIR``, whose ``snapshot.json`` is copied
beside the results). Steps, each skipped when its file exists (delete it to redo):

1. ``report.csv``: quality on the mix's held-out text (256 windows of 128 tokens, the
   spliced-in loss on the first 32), as the recipe's own report.
2. ``labels.json`` in ``DIR``: every feature node of the three gallery feature graphs
   (``graphs/gallery-features.jsonl``, traced without validation to find them) labelled from
   ``--label-windows`` windows of 64 tokens of the mix's training text.
3. ``graphs/<id>.json`` (``--graphs`` elsewhere): the three prompts traced with the set (validated on
   ``ValidationConfig()``'s 100 nodes, node cards, skip share) and with neurons (the baseline
   the issue compares against), pruned graphs as ``scrying trace`` writes them; each basis
   selects ``scrying trace``'s 200 feature nodes, the set's ``--max-features`` of them if given
   (the rest of its active features are error nodes, clamped in the frozen model).
4. ``summary.json``: per graph :func:`scrying.transcoders.graph_summary.graph_summary` (the
   top features at 'Dallas' and into the target, with their contexts' places).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROMPTS = ROOT / "graphs" / "gallery-features.jsonl"
AT_TOKEN = {"dallas-texas-features": "Dallas", "dallas-two-hop-features": "Dallas"}


def _prompts() -> list[dict]:
    return [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcoders", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--graphs", type=Path, help="folder for the traced graphs (default: OUT/graphs)")
    parser.add_argument("--label-windows", type=int, default=1024)
    parser.add_argument("--no-report", action="store_true", help="skip step 1 (graphs of a set whose report is elsewhere)")
    parser.add_argument("--max-features", type=int, help="feature nodes the set's graphs select (default: scrying trace's 200)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from scrying.attribution import Graph
    from scrying.attribution.trace import TraceConfig, trace, write_trace
    from scrying.models import default_cache_dir, load_model
    from scrying.transcoders import (
        TranscoderBasis,
        label_features,
        read_cards,
        read_labels,
        read_transcoders,
        write_labels,
    )
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.graph_summary import graph_summary
    from scrying.transcoders.quality import quality_report
    from scrying.transcoders.skip_share import graph_skip_shares
    from scrying.transcoders.train import first_windows

    out = args.out
    graphs = args.graphs or out / "graphs"
    out.mkdir(parents=True, exist_ok=True)
    graphs.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
    if (args.transcoders / "snapshot.json").exists():
        snap = json.loads((args.transcoders / "snapshot.json").read_text())
        snap.pop("history", None)
        (out / "snapshot.json").write_text(json.dumps(snap, indent=1) + "\n")
    model = load_model("gemma-3-270m")
    tset = read_transcoders(args.transcoders)
    mix = build_mixed_corpus(Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()), CorpusMixConfig())

    if not args.no_report and not (out / "report.csv").exists():
        started = time.perf_counter()
        windows = first_windows(model, read_texts([mix.heldout]), 128, 256, what=str(mix.heldout))
        report = quality_report(model, tset, windows, splice_windows=windows[:32])
        report.to_csv(out / "report.csv", index=False)
        timings["report_s"] = time.perf_counter() - started

    if not (args.transcoders / "labels.json").exists():
        started = time.perf_counter()
        features: set[tuple[int, int]] = set()
        for item in _prompts():
            result = trace(model, item["prompt"], basis=TranscoderBasis(tset), validate=False, cards=False)
            features |= {(n.layer, n.feature) for n in result.pruned.nodes if n.kind == "feature"}
        windows = first_windows(model, read_texts([mix.train]), 64, args.label_windows, what=str(mix.train))
        write_labels(args.transcoders, label_features(model, tset, sorted(features), windows))
        timings["labels_s"] = time.perf_counter() - started

    basis = TranscoderBasis(tset, labels=read_labels(args.transcoders), cards=read_cards(args.transcoders))
    features_config = TraceConfig()
    if args.max_features is not None:
        features_config = dataclasses.replace(
            features_config, features=dataclasses.replace(features_config.features, max_feature_nodes=args.max_features)
        )
    summary = {}
    for item in _prompts():
        for name, use in ((item["id"], basis), (item["id"].replace("-features", "-neurons"), None)):
            path = graphs / f"{name}.json"
            if not path.exists():
                config = features_config if use is not None else TraceConfig()
                result = trace(model, item["prompt"], config, basis=use, model_name="gemma-3-270m")
                timings[f"trace_{name}_s"] = result.seconds
                if use is not None:
                    result.pruned.metadata["skip_share"] = graph_skip_shares(model, result.graph, use).to_json()
                write_trace(result, json_path=path)
            summary[name] = graph_summary(Graph.read_json(path), at_token=AT_TOKEN.get(item["id"]))
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    logging.info("wrote %s", out)


if __name__ == "__main__":
    main()
