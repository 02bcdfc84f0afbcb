"""``scrying models``, ``scrying info MODEL``, ``scrying predict PROMPT``, ``scrying train-toy``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrying.cli.common import add_model_args, cache_dir_of, model_from_args
from scrying.models import REGISTRY, anatomy
from scrying.models.registry import availability
from scrying.predict import PredictConfig, predict
from scrying.prompts import check_text
from scrying.toys import RepeatedSequenceTask, ToyModelConfig, TrainConfig, train_toy


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_models(args: argparse.Namespace) -> int:
    _write("Registered models (offline):")
    for entry in REGISTRY.values():
        _write(f"  {entry.name:<20} {entry.description}")
        _write(f"  {'':<20} [{availability(entry, cache_dir_of(args))}]")
    _write("Also accepted: a local Hugging Face directory, a .gguf file, or a hub name that")
    _write("TransformerLens supports (e.g. gpt2, EleutherAI/pythia-70m; needs a network).")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    args.model = args.model_spec
    model = model_from_args(args)
    facts = anatomy(model, args.model_spec)
    _write(facts.summary().to_string(index=False, header=False))
    _write("")
    _write("Hook sites ({L} = layer):")
    _write(facts.parts.to_string(index=False))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    config = PredictConfig(
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        sampling=args.sampling,
        top_p=args.top_p,
        temperature=args.temperature,
        seed=args.seed,
    )
    check_text(args.prompt)
    model = model_from_args(args)
    result = predict(model, args.prompt, config)
    table = result.top.assign(token=result.top.token.map(repr))
    _write(table[["token", "id", "prob"]].to_string(index=False, float_format=lambda p: f"{p:.4f}"))
    if result.continuation:
        _write(f"\n{args.prompt}{result.continuation}")
    return 0


def cmd_train_toy(args: argparse.Namespace) -> int:
    task = RepeatedSequenceTask(n_content=args.n_content, half_len=args.half_len)
    result = train_toy(
        args.out,
        task,
        ToyModelConfig(arch=args.arch, n_layers=args.layers, d_model=args.d_model, n_heads=args.heads),
        TrainConfig(steps=args.steps, seed=args.seed, checkpoint_every=args.checkpoint_every),
        progress=True,
    )
    _write(f"saved {result.out_dir} (induction accuracy {result.accuracy:.3f}, {result.seconds:.0f} s)")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list the models scrying can load", parents=parents)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="anatomy of a model: shape, attention types, hook sites", parents=parents)
    p.add_argument("model_spec", metavar="MODEL", help="model name or path")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("predict", help="top next tokens and a continuation", parents=parents)
    p.add_argument("prompt", metavar="PROMPT")
    add_model_args(p)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--max-new-tokens", type=int, default=0, help="continue the prompt this many tokens")
    p.add_argument("--sampling", choices=["greedy", "nucleus"], default="greedy")
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("train-toy", help="train a toy model on repeated sequences (induction)", parents=parents)
    p.add_argument("out", type=Path, metavar="OUT_DIR")
    p.add_argument("--arch", choices=["llama", "gpt2"], default="llama")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--n-content", type=int, default=64)
    p.add_argument("--half-len", type=int, default=20)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_toy)
