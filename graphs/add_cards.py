"""Add node cards to the gallery's stored graphs (``make gallery CARDS=1``): each neuron and
component graph of a model this machine can load gets what a click shows (a neuron's promoted and
suppressed tokens and its top contexts in the default corpus; a head's pattern and every
component's patching effect), computed as ``scrying trace`` computes them, without retracing.
Transcoder-feature graphs get theirs from ``labels.json`` when retraced with their transcoders.

    python graphs/add_cards.py graphs/gallery [--model gemma-3-270m] [--windows 256]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scrying.attribution import Graph
from scrying.attribution.stored_cards import cards_for_graph
from scrying.models import LoadConfig, default_cache_dir, load_model
from scrying.transcoders.corpus import build_default_corpus, read_texts
from scrying.transcoders.train import first_windows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--windows", type=int, default=256, help="windows of 64 tokens of the default corpus")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = [p for p in sorted(args.folder.glob("*.json")) if p.name != "index.json"]
    graphs = {p: Graph.read_json(p) for p in paths}
    mine = {p: g for p, g in graphs.items() if g.model_name == args.model and g.level in ("neurons", "components")}
    if not mine:
        sys.stdout.write(f"no {args.model} neuron or component graphs in {args.folder}\n")
        return 0
    model = load_model(args.model, LoadConfig(cache_dir=default_cache_dir()))
    corpus = build_default_corpus(Path(default_cache_dir()))
    windows = first_windows(model, read_texts([corpus]), 64, args.windows, what=str(corpus))
    source = f"{windows.shape[0]} windows of 64 tokens of {corpus.name}"
    for path, graph in mine.items():
        graph.metadata["cards"] = cards_for_graph(model, graph, windows=windows, contexts_from=source)
        graph.write_json(path)
        sys.stdout.write(f"{path}: {len(graph.metadata['cards'])} cards\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
