"""circuit-tracer's half of ``benchmarks/vs_circuit_tracer.py``; runs in circuit-tracer's venv.

Not part of scrying and imports nothing from it (its venv has transformer-lens 3.2.1 and
transformers 4.57.3, scrying's has TransformerLens 4.3). Loads the Hugging Face directory scrying
converted from the GGUF (weights and tokenizer), the transcoder set, runs
``circuit_tracer.attribute`` once per repeat and writes what the comparison needs to ``--out``
(safetensors + JSON): the graph's adjacency and node keys, the clean logits of the prompt, its
own wall time per repeat and its peak resident memory.

    /work/ct-venv/bin/python benchmarks/circuit_tracer_side.py --model-dir DIR --transcoders DIR \
        --prompt "..." --out DIR [--max-feature-nodes 200 --batch-size 16 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import PeakSampler, peak_rss_kb  # noqa: E402  (standard library only)


def replacement_model_class():
    """circuit-tracer's TransformerLens replacement model, with one fix for Gemma 3.

    ``_deduplicate_attention_buffers`` keeps one ``rotary_sin``/``rotary_cos`` for *all* layers
    (the last block's), but Gemma 3's local (sliding-window) layers rotate with base 10,000 and
    its global layers with base 1,000,000: every local layer then runs with the global rotation
    and the logits move by ~5 on an 11-token prompt (measured; transformer-lens 3.2.1's own
    ``HookedTransformer`` agrees with transformers to 2e-5). The subclass shares the buffers per
    attention type instead, which keeps the memory saving and the model's own rotations.
    """
    from circuit_tracer.replacement_model.replacement_model_transformerlens import (
        TransformerLensReplacementModel,
    )

    class Fixed(TransformerLensReplacementModel):
        def _deduplicate_attention_buffers(self) -> None:
            shared: dict = {}
            for block in self.blocks:
                attn = block.attn
                kind = attn.attn_type
                names = ["mask"] + (["rotary_sin", "rotary_cos"] if hasattr(attn, "rotary_sin") else [])
                for name in names:
                    key = (kind, name)
                    if key in shared:
                        setattr(attn, name, shared[key])
                    else:
                        shared[key] = getattr(attn, name)

    return Fixed


def load_transcoders(directory: Path):
    """circuit-tracer's own loader on a local ``config.yaml`` directory.

    circuit-tracer resolves the config's file names against the working directory, so they
    are made absolute here. Its loader knows ReLU and JumpReLU only (JumpReLU when a threshold
    is stored); a set whose ``scrying`` block says TopK gets circuit-tracer's own ``TopK``
    activation, so both tools compute the same activations.
    """
    import torch
    import yaml
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.utils.hf_utils import load_transcoders as ct_load

    config = yaml.safe_load((directory / "config.yaml").read_text())
    config["transcoders"] = [str((directory / p).resolve()) for p in config["transcoders"]]
    config.setdefault("scan", f"local:{directory.resolve()}")
    tset = ct_load(config, device=torch.device("cpu"), dtype=torch.float32)
    extra = config.get("scrying") or {}
    if extra.get("activation") == "topk":
        for tc in tset.transcoders:
            tc.activation_function = TopK(int(extra["k"]))
    return tset, config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--transcoders", type=Path, required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-feature-nodes", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-logits", type=int, default=5)
    p.add_argument("--logit-probability", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()

    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    from circuit_tracer import attribute
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tset, config = load_transcoders(args.transcoders)
    hf_model = AutoModelForCausalLM.from_pretrained(str(args.model_dir), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(args.model_dir))
    model = replacement_model_class().from_pretrained_and_transcoders(
        "google/gemma-3-270m",
        tset,
        hf_model=hf_model,
        tokenizer=tokenizer,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    del hf_model
    load_seconds = time.perf_counter() - t0

    tokens = model.ensure_tokenized(args.prompt)
    with torch.no_grad():
        logits = model(tokens.unsqueeze(0))[0].float()

    seconds, cpu_seconds, increments = [], [], []
    for _ in range(args.repeat):
        with PeakSampler() as mem:
            cpu = time.process_time()
            start = time.perf_counter()
            graph = attribute(
                tokens,
                model,
                max_n_logits=args.max_logits,
                desired_logit_prob=args.logit_probability,
                batch_size=args.batch_size,
                max_feature_nodes=args.max_feature_nodes,
            )
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu)
        increments.append(mem.peak - mem.before)

    args.out.mkdir(parents=True, exist_ok=True)
    active = graph.active_features  # (n_active, 3): layer, pos, feature index
    selected = active[graph.selected_features]
    save_file(
        {
            "adjacency": graph.adjacency_matrix.contiguous().float(),
            "selected": selected.contiguous().long(),
            "selected_values": graph.activation_values[graph.selected_features].contiguous().float(),
            "tokens": tokens.contiguous().long(),
            "logits": logits.contiguous(),
            "logit_tokens": torch.tensor([t.vocab_idx for t in graph.logit_targets], dtype=torch.long),
            "logit_probabilities": graph.logit_probabilities.contiguous().float(),
        },
        str(args.out / "circuit_tracer.safetensors"),
    )
    (args.out / "circuit_tracer.json").write_text(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "attribution_rss_increment_bytes": increments,
                "load_seconds": load_seconds,
                "peak_rss_kb": peak_rss_kb(),
                "n_active_features": int(active.shape[0]),
                "threads": torch.get_num_threads(),
                "n_layers": int(model.cfg.n_layers),
                "n_pos": int(tokens.shape[0]),
                "activation": [type(t.activation_function).__name__ for t in tset.transcoders][0],
            }
        )
    )


if __name__ == "__main__":
    main()
