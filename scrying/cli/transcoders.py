"""``scrying transcoders corpus|train|export|report|label|download`` (build the default corpus, train,
export a run's checkpoint, report quality, label features, fetch a published set from the hub) and ``scrying intervene``
(change features, see the top tokens move)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from scrying.attribution import Graph
from scrying.cli.common import add_model_args, model_from_args
from scrying.errors import InvalidInputError
from scrying.models import default_cache_dir
from scrying.preflight import check_output_dir, check_output_file
from scrying.prompts import check_text, tokenize
from scrying.transcoders import label_features, read_transcoders, write_labels
from scrying.transcoders.corpus import build_default_corpus, check_text_files, read_texts
from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
from scrying.transcoders.hub import download_published
from scrying.transcoders.intervene import FeatureEdit, compare_top_tokens, intervened_logits
from scrying.transcoders.local_response import LocalResponseConfig, local_response_report
from scrying.transcoders.quality import quality_report
from scrying.transcoders.train import export_checkpoint, first_windows, train_transcoders
from scrying.transcoders.train_config import PRESETS


def _cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir or os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir())


def _corpus(args: argparse.Namespace) -> tuple[list[Path], list[Path] | None]:
    """(training files, held-out files or None): ``--text`` files (each checked: readable UTF-8
    text) with ``--heldout`` files, else the built corpus ``--corpus`` names (built once): the
    mix brings its held-out split, the Bible has none (its first windows are held out)."""
    if args.text:
        check_text_files(list(args.text))
        heldout = list(getattr(args, "heldout", None) or []) or None
        if heldout:
            check_text_files(heldout)
        return list(args.text), heldout
    if _corpus_name(args) == "mix":
        mix = build_mixed_corpus(_cache_dir(args), CorpusMixConfig(seed=getattr(args, "corpus_seed", 0)))
        return [mix.train], [mix.heldout]
    return [build_default_corpus(_cache_dir(args))], None


def _corpus_name(args: argparse.Namespace) -> str:
    if getattr(args, "corpus", None):
        return args.corpus
    return "mix" if getattr(args, "preset", None) == "recipe" else "bible"


def _corpus_paths(args: argparse.Namespace) -> list[Path]:
    """The training text (``label`` reads it)."""
    return _corpus(args)[0]


def cmd_corpus(args: argparse.Namespace) -> int:
    if args.mix:
        mix = build_mixed_corpus(_cache_dir(args), CorpusMixConfig(seed=args.corpus_seed))
        sys.stdout.write(f"train: {mix.train}\nheld out: {mix.heldout}\nmanifest: {mix.manifest}\n")
        return 0
    sys.stdout.write(f"{build_default_corpus(_cache_dir(args))}\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    config = PRESETS[args.preset]
    changes = {k: v for k, v in (("total_tokens", args.tokens), ("n_features", args.features), ("lr", args.lr), ("seed", args.seed)) if v is not None}
    if args.revive_dead_only:
        changes["revive_rare"] = False
    config = dataclasses.replace(config, **changes)
    check_output_dir(args.out, option="--out")
    train, heldout = _corpus(args)
    model = model_from_args(args)
    result = train_transcoders(model, lambda: read_texts(train), args.out, config, model_name=args.model, progress=True,
                               eval_texts=(lambda: read_texts(heldout)) if heldout else None)
    sys.stdout.write(f"wrote {result.directory} ({result.chunks_trained} chunks trained in this run)\n")
    sys.stdout.write(result.report.to_string(index=False) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    check_output_dir(args.out, option="--out")
    _, snap = export_checkpoint(args.run, args.out)
    sys.stdout.write(f"wrote {args.out}: the set after {snap['chunks_done']} of {snap['n_chunks']} chunks "
                     f"({snap['steps_done']} of {snap['total_steps']} Adam steps, {snap['tokens_done']:,} tokens)\n")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    tset = read_transcoders(args.transcoders)
    train, heldout = _corpus(args)
    paths = heldout or train
    model = model_from_args(args)
    windows = first_windows(model, read_texts(paths), args.seq_len, args.windows, what=f"corpus {', '.join(map(str, paths))}")
    splice = windows[: args.splice_windows] if args.splice_windows else None
    report = quality_report(model, tset, windows, rare_every=args.rare_every, splice_windows=splice)
    if args.response:
        response = local_response_report(model, tset, windows, LocalResponseConfig(directions_from=args.response))
        report = report.merge(response[["layer", "transcoder_error", "skip_only_error", "neuron_error"]].rename(columns={
            "transcoder_error": "response_error", "skip_only_error": "response_skip_only", "neuron_error": "response_neurons"}), on="layer")
    sys.stdout.write(report.to_string(index=False) + "\n")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    check_output_dir(args.out, option="--out")
    out = download_published(args.repo, list(args.folders), args.out, revision=args.revision)
    sys.stdout.write(f"wrote {out}\n")
    return 0


def _feature(text: str) -> tuple[int, int]:
    layer, _, index = text.partition(":")
    if not (layer.isdigit() and index.isdigit()):
        raise InvalidInputError(f"a feature is LAYER:INDEX (e.g. 3:117), got {text!r}")
    return int(layer), int(index)


def cmd_label(args: argparse.Namespace) -> int:
    features = [_feature(f) for f in args.features or []]
    if args.graph is not None:
        graph = Graph.read_json(args.graph)
        features += [(n.layer, n.feature) for n in graph.nodes if n.kind == "feature"]
    if not features:
        raise InvalidInputError("give --features LAYER:INDEX ... or --graph GRAPH.json")
    tset = read_transcoders(args.transcoders)
    for layer, index in features:
        tset.check_feature(layer, index)
    check_output_file(Path(args.transcoders) / "labels.json", option="TRANSCODERS (labels.json)")
    paths = _corpus_paths(args)
    model = model_from_args(args)
    windows = first_windows(model, read_texts(paths), args.seq_len, args.windows, what=f"corpus {', '.join(map(str, paths))}")
    labels = label_features(model, tset, sorted(set(features)), windows)
    path = write_labels(args.transcoders, labels)
    for (layer, index), label in sorted(labels.items()):
        sys.stdout.write(f"L{layer} #{index}: {label.label}\n")
    sys.stdout.write(f"wrote {path}\n")
    return 0


def _edits(args: argparse.Namespace) -> list[FeatureEdit]:
    """``--set 3:17@5=0`` / ``--scale 3:17=2`` / ``--steer 3:17@4=10`` (no ``@POS``: every
    position but BOS)."""
    edits = []
    for mode in ("set", "scale", "steer"):
        for text in getattr(args, mode) or []:
            where, eq, value = text.partition("=")
            feature, at, pos = where.partition("@")
            try:
                number = float(value)
            except ValueError:
                number = None
            if not eq or number is None or (at and not pos.isdigit()):
                raise InvalidInputError(f"--{mode} takes LAYER:INDEX[@POS]=VALUE, got {text!r}")
            layer, index = _feature(feature)
            edits.append(FeatureEdit(layer=layer, index=index, mode=mode, value=number, pos=int(pos) if at else None))
    if not edits:
        raise InvalidInputError("give at least one --set, --scale or --steer")
    return edits


def cmd_intervene(args: argparse.Namespace) -> int:
    edits = _edits(args)
    check_text(args.prompt)
    tset = read_transcoders(args.transcoders)
    for edit in edits:
        tset.check_feature(edit.layer, edit.index)
    model = model_from_args(args)
    tokens = tokenize(model, args.prompt)
    with torch.no_grad():
        clean = model(tokens)
    edited = intervened_logits(model, tset, tokens, edits)
    sys.stdout.write(compare_top_tokens(model, clean, edited, k=args.top).to_string(index=False) + "\n")
    return 0


def _add_corpus_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus-seed", type=int, default=0, help="the mix's shuffling and held-out seed (default 0)")


def _add_corpus_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", choices=("bible", "mix"),
                   help="built corpus to train on without --text (default: mix for --preset recipe, else bible)")
    _add_corpus_seed(p)


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("transcoders", help="train per-layer transcoders offline and report their quality", parents=parents)
    tsub = p.add_subparsers(dest="transcoders_command", metavar="ACTION", required=True)

    c = tsub.add_parser("corpus", help="build (once) the training text: the World English Bible, or with --mix the general "
                        "English mix (prose, reference text, geography) with its held-out split", parents=parents)
    c.add_argument("--mix", action="store_true", help="the mixed corpus (scrying.transcoders.corpus_mix)")
    _add_corpus_seed(c)
    c.set_defaults(func=cmd_corpus)

    t = tsub.add_parser("train", help="train one transcoder per layer (resumes a killed run in OUT)", parents=parents)
    add_model_args(t)
    t.add_argument("--out", type=Path, required=True, help="directory: config.yaml, layer_<i>.safetensors, report.csv")
    t.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    t.add_argument("--text", type=Path, nargs="*", help="UTF-8 text files (default: the built corpus --corpus names)")
    t.add_argument("--heldout", type=Path, nargs="*", help="with --text: held-out UTF-8 text for the report")
    _add_corpus_choice(t)
    t.add_argument("--tokens", type=int, help="training tokens (overrides the preset)")
    t.add_argument("--features", type=int, help="features per layer (overrides the preset)")
    t.add_argument("--lr", type=float, help="peak learning rate (overrides the preset)")
    t.add_argument("--seed", type=int)
    t.add_argument("--revive-dead-only", action="store_true",
                   help="the revival chunks lift only the features active on none of a chunk's rows (revive_rare off)")
    t.set_defaults(func=cmd_train)

    e = tsub.add_parser("export", help="write the set as it stands at a training run's last checkpoint (the run may go on)",
                        parents=parents)
    e.add_argument("run", metavar="RUN", type=Path, help="the --out folder of `scrying transcoders train`")
    e.add_argument("--out", type=Path, required=True, help="folder for config.yaml, layer_<i>.safetensors and snapshot.json")
    e.set_defaults(func=cmd_export)

    r = tsub.add_parser("report", help="per-layer FVU, L0 and dead features of a transcoder directory", parents=parents)
    add_model_args(r)
    r.add_argument("transcoders", type=Path)
    r.add_argument("--text", type=Path, nargs="*", help="UTF-8 text files (default: the held-out split of the mix)")
    r.add_argument("--corpus", choices=("bible", "mix"), default="mix", help="built corpus to read without --text (default: mix)")
    _add_corpus_seed(r)
    r.add_argument("--windows", type=int, default=64)
    r.add_argument("--seq-len", type=int, default=128)
    r.add_argument("--rare-every", type=int, default=1000, help="rare: fired on fewer than one row in this many (default 1000)")
    r.add_argument("--splice-windows", type=int, default=8,
                   help="windows for the spliced-in loss and KL (one model run per layer each; 0: skip)")
    r.add_argument("--response", nargs="?", const="decoder", choices=("decoder", "data"),
                   help="also each layer's local-response error (scrying/transcoders/local_response.py): how the "
                        "transcoder, its skip alone and the neurons answer a change of the MLP's input against the MLP, "
                        "along earlier features' decoder rows (default) or the inputs' differences (data); 0 is exact")
    r.set_defaults(func=cmd_report)

    lab = tsub.add_parser("label", help="label features (top contexts, promoted tokens) into DIR/labels.json", parents=parents)
    add_model_args(lab)
    lab.add_argument("transcoders", type=Path)
    lab.add_argument("--features", nargs="*", help="LAYER:INDEX ...")
    lab.add_argument("--graph", type=Path, help="label every feature node of this graph JSON")
    lab.add_argument("--text", type=Path, nargs="*")
    lab.add_argument("--windows", type=int, default=256)
    lab.add_argument("--seq-len", type=int, default=64)
    lab.set_defaults(func=cmd_label)

    d = tsub.add_parser("download", help="fetch published transcoders (Gemma Scope, SAELens) from the hub into a folder",
                        parents=parents)
    d.add_argument("repo", metavar="REPO", help="hub repository, e.g. google/gemma-scope-2-270m-pt")
    d.add_argument("folders", metavar="FOLDER", nargs="+",
                   help="folder patterns in it, e.g. 'transcoder_all/layer_*_width_16k_l0_small_affine'")
    d.add_argument("--out", type=Path, required=True, help="folder to write them into (then: --transcoders OUT/...)")
    d.add_argument("--revision", help="branch, tag or commit (default: main)")
    d.set_defaults(func=cmd_download)

    i = sub.add_parser("intervene", help="ablate, clamp, scale or steer transcoder features; top tokens before and after",
                       parents=parents)
    i.add_argument("prompt", metavar="PROMPT")
    add_model_args(i)
    i.add_argument("--transcoders", type=Path, required=True)
    i.add_argument("--set", nargs="*", metavar="L:I[@P]=V", help="set the activation (0 ablates)")
    i.add_argument("--scale", nargs="*", metavar="L:I[@P]=S", help="multiply the activation")
    i.add_argument("--steer", nargs="*", metavar="L:I[@P]=A", help="add A x the decoder row")
    i.add_argument("--top", type=int, default=10)
    i.set_defaults(func=cmd_intervene)
