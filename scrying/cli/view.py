"""``scrying view``: a stored graph JSON to its page, or a folder of them to a gallery, without
rerunning the model; a saved view state (pins, supernodes, thresholds) opens with the page or goes
into the graph JSON's ``qParams`` for circuit-tracer's viewer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scrying.errors import InvalidInputError
from scrying.preflight import check_distinct, check_input_dir, check_output_file
from scrying.viewer import (
    PageConfig,
    read_graph_json,
    read_state,
    render_gallery,
    with_state,
    write_page,
)


def cmd_view(args: argparse.Namespace) -> int:
    config = PageConfig(node_threshold=args.node_threshold, edge_threshold=args.edge_threshold, shared_assets=args.shared_assets)
    if args.gallery is not None:
        if args.graphs or args.state or args.out or args.with_state:
            raise InvalidInputError("--gallery DIR renders every graph JSON in DIR; give no GRAPH, --out, --state or --with-state")
        check_input_dir(args.gallery, option="--gallery")
        written = render_gallery(args.gallery, config=PageConfig(
            node_threshold=args.node_threshold, edge_threshold=args.edge_threshold, shared_assets=True))
        sys.stdout.write(f"{len(written) - 1} pages and {written[-1]} written\n")
        return 0
    if len(args.graphs) != 1:
        raise InvalidInputError("give one GRAPH.json (or --gallery DIR)")
    graph_path = args.graphs[0]
    if args.with_state is not None and args.state is None:
        raise InvalidInputError("--with-state needs --state STATE.json")
    out = check_output_file(args.out or graph_path.with_suffix(".html"), option="--out")
    if args.with_state is not None:
        check_output_file(args.with_state, option="--with-state")
        check_distinct({"--with-state": args.with_state, "--out": out})
    data = read_graph_json(graph_path)
    state = read_state(args.state) if args.state else None
    if args.with_state is not None and state is not None:
        args.with_state.parent.mkdir(parents=True, exist_ok=True)
        args.with_state.write_text(json.dumps(with_state(data, state), allow_nan=False), encoding="utf-8")
        sys.stdout.write(f"wrote {args.with_state}\n")
    write_page(data, out, config, state=state)
    sys.stdout.write(f"wrote {out}\n")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("view", help="the page of a stored graph JSON (or a gallery of them), no model run", parents=parents)
    p.add_argument("graphs", nargs="*", type=Path, metavar="GRAPH.json")
    p.add_argument("--out", type=Path, help="HTML file (default: GRAPH.html beside the JSON)")
    p.add_argument("--gallery", type=Path, metavar="DIR",
                   help="render DIR/*.json to pages (sharing the viewer's script) and DIR/index.html")
    p.add_argument("--state", type=Path, help="a view state the page exported (or a graph JSON's qParams): the page opens with it")
    p.add_argument("--with-state", type=Path, metavar="OUT.json",
                   help="also write the graph JSON with --state in its qParams (opens so in circuit-tracer's viewer)")
    p.add_argument("--node-threshold", type=float, help="opening node threshold (default 0.6; components 1.0)")
    p.add_argument("--edge-threshold", type=float, help="opening edge threshold (default 0.85; components 1.0)")
    p.add_argument("--shared-assets", action="store_true", help="link scrying-viewer.js/.css written beside the page")
    p.set_defaults(func=cmd_view)
