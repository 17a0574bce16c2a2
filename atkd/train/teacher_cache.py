"""Teacher logits computed once and reused by every student distilled on the same ground-truth data.

Why: on ground-truth sequences (SFT data) the teacher's distributions do not depend on the student, so
running the teacher forward at every step of every student repeats the same work; on 2 CPU cores that
forward costs 1-2x a student step (FEASIBILITY.md). The cache stores the teacher's full logits at the
target positions only (response + EOS: about a quarter of the tokens), in example order:

    logits.npy   [rows, V]  float16 (default) or float32
    offsets.npy  [examples + 1] int64: rows of example i are offsets[i]:offsets[i+1]
    meta.json    what it was built from (teacher, data hash, tokenizer hash, max_length, dtype, format)

A sparse cache (`topk=K`, meta format "sparse") keeps each row's top K instead of the V logits
(atkd.losses.sparse: UnC, TKD and the +ATKD split stay exact), 4K + 8 bytes per row:

    indices.npy  [rows, K]  uint16 (int32 beyond 65536 tokens)   logp.npy  [rows, K]  float16
    target.npy   [rows]     float32 log p of the row's target    tail.npy  [rows]     float32 log tail mass

A sparse cache may add a tail estimator (`tail`, atkd.losses.tails) that says how the tail mass spreads
over the tail's tokens, for losses that need the teacher beyond its top K (reverse KL):

    extra.npy       [rows, E]  lowrank: E float16 coefficients; sampled: E token ids drawn from the tail
    tail_mean.npy   [V]        lowrank: the mean centred logits   tail_basis.npy  [V, E]  its directions

A lowrank tail's directions are fitted on the first `TAIL_FIT_ROWS` target positions of the data; a
sampled tail is drawn with a fixed seed, so a cache is reproducible.

Loading checks the metadata against the run (same data file content, tokenizer and max_length) so a
stale cache fails loudly. float16 rounds each logit to ~3 significant digits (|error| < 0.01 for
|logit| < 16); use float32 to reproduce online KD to float precision. On-policy methods (student
samples) cannot use a cache: their sequences change every step.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import PreTrainedTokenizerBase

from atkd.fsutil import atomic_dir, sha256_file
from atkd.losses.sparse import SparseTeacher, sparse_from_logits
from atkd.losses.tails import ESTIMATORS, TailModel, bytes_per_position, fit_lowrank
from atkd.models.ladder import load_model
from atkd.models.tokenizer import load_tokenizer
from atkd.train.data import Example, collate, load_examples, target_mask

log = logging.getLogger(__name__)
DTYPES = {"float16": np.float16, "float32": np.float32}


LOGITS_BUDGET = 2**30  # bytes of float32 logits per teacher forward pass when no batch size is given
TAIL_FIT_ROWS = 2048  # target positions a lowrank tail's directions are fitted on
TAIL_SEED = 0  # the sampled tail's draws


def _tokenizer_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()


@torch.no_grad()
def build_teacher_cache(
    teacher: str,
    train_data: str,
    out_dir: str | Path,
    tokenizer: str | None = None,
    max_length: int = 512,
    batch_size: int | None = None,
    dtype: str = "float16",
    device: str = "auto",
    topk: int | None = None,
    tail: str = "bucket",
    tail_width: int = 0,
    tail_eps: float = 0.0,
) -> Path:
    """Run `teacher` over every example of `train_data` and save its target-position logits to `out_dir`
    (all of them, or with `topk` the sparse top-K form, its tail read by the `tail` estimator of width
    `tail_width` and `tail_eps`: atkd.losses.tails). `batch_size` records per forward pass; by default
    as many as keep one pass's float32 logits within LOGITS_BUDGET (64 at most): a 49k vocabulary would
    otherwise need 10 GB of memory for 64 records of 192 tokens."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
        raise ValueError(f"topk must be a positive integer, got {topk!r}")
    check_tail(tail, tail_width, tail_eps, topk)
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    tok = load_tokenizer(tokenizer or teacher)
    model = load_model(teacher, dev).eval()
    examples = load_examples(train_data, tok, max_length)
    counts = [e.num_targets for e in examples]
    offsets = np.zeros(len(examples) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    vocab = model.config.vocab_size
    if topk is not None and not topk < vocab:
        raise ValueError(f"topk {topk} must be below the teacher's vocabulary ({vocab})")
    rows_total = int(offsets[-1])
    if batch_size is None:
        batch_size = max(1, min(64, LOGITS_BUDGET // (4 * vocab * max(len(e.input_ids) for e in examples))))
    sparse_tail = topk is not None and tail != "bucket"
    tail_model = (
        TailModel(tail, eps=tail_eps) if sparse_tail and tail != "lowrank" else None
    )  # lowrank: fitted
    width = tail_width if sparse_tail and tail != "uniform" else 0

    def passes():
        """(first row, target logits [N, V] float32, their labels [N]) of every forward pass in order."""
        for lo in range(0, len(examples), batch_size):
            batch = {
                k: v.to(dev) for k, v in collate(examples[lo : lo + batch_size], tok.pad_token_id).items()
            }
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            mask = target_mask(batch)
            yield int(offsets[lo]), out[:, :-1][mask].float(), batch["labels"][:, 1:][mask]

    with atomic_dir(out_dir) as tmp:
        arrays = _open_arrays(tmp, rows_total, vocab, dtype, topk, _extra_dtype(tail, vocab), width)
        stream = passes()
        if tail == "lowrank" and topk is not None:  # the directions first, from the first passes
            head = []
            for item in stream:
                head.append(item)
                if sum(len(rows) for _, rows, _ in head) >= TAIL_FIT_ROWS:
                    break
            fit = torch.cat([rows for _, rows, _ in head])[:TAIL_FIT_ROWS]
            tail_model = fit_lowrank(fit, tail_width, seed=TAIL_SEED)
            np.save(tmp / "tail_mean.npy", tail_model.mean.cpu().numpy())
            np.save(tmp / "tail_basis.npy", tail_model.basis.cpu().numpy())
            stream = itertools.chain(head, stream)
        gen = torch.Generator(device=dev).manual_seed(TAIL_SEED)
        for first, rows, labels in stream:
            at = slice(first, first + len(rows))
            if topk is None:
                arrays["logits"][at] = rows.cpu().numpy()
                continue
            sparse = sparse_from_logits(
                rows, labels, topk, tail_model=tail_model, samples=width, generator=gen,
                index_dtype=torch.int32,
            )  # fmt: skip
            for name in SPARSE_FIELDS:
                arrays[name][at] = getattr(sparse, name).cpu().numpy()
            if sparse.extra is not None:
                arrays["extra"][at] = sparse.extra.cpu().numpy()
        for array in arrays.values():
            array.flush()
        del arrays
        np.save(tmp / "offsets.npy", offsets)
        meta = {
            "teacher": str(teacher),
            "train_data": str(train_data),
            "data_sha256": sha256_file(train_data),
            "tokenizer_sha256": _tokenizer_hash(tok),
            "max_length": max_length,
            "examples": len(examples),
            "rows": int(offsets[-1]),
            "vocab_size": vocab,
            "dtype": dtype,
            "format": "dense" if topk is None else "sparse",
            "topk": topk,
        }
        if sparse_tail:
            meta["tail"] = {"kind": tail, "width": width, "eps": tail_eps, "fit_rows": TAIL_FIT_ROWS}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info(
        "teacher cache %s: %d examples, %d rows x %s", out_dir, len(examples), rows_total,
        f"{vocab} ({dtype})" if topk is None else f"top {topk} of {vocab}",
    )  # fmt: skip
    return Path(out_dir)


SPARSE_FIELDS = ("indices", "logp", "target", "tail")


def check_tail(tail: str, width: int, eps: float, topk: int | None) -> None:
    """Raise ValueError for a tail estimator that cannot be built (atkd.losses.tails)."""
    if tail not in ESTIMATORS:
        raise ValueError(f"tail must be one of {', '.join(ESTIMATORS)}, got {tail!r}")
    if tail != "bucket" and topk is None:
        raise ValueError(f"tail {tail!r} reads a sparse cache: set topk")
    if tail in ("lowrank", "sampled") and (
        isinstance(width, bool) or not isinstance(width, int) or width < 1
    ):
        raise ValueError(
            f"tail {tail!r} needs tail_width >= 1 (lowrank: rank; sampled: tokens), got {width!r}"
        )
    if not 0 <= eps <= 1:
        raise ValueError(f"tail_eps must be in [0, 1], got {eps!r}")


def _index_dtype(vocab: int) -> type:
    return np.uint16 if vocab <= 1 << 16 else np.int32


def _extra_dtype(tail: str, vocab: int) -> type:
    """Storage of a tail's per-position data: float16 coefficients, or token ids."""
    return np.float16 if tail == "lowrank" else _index_dtype(vocab)


def _open_arrays(
    folder: Path, rows: int, vocab: int, dtype: str, topk: int | None, extra_dtype: type, width: int
) -> dict[str, np.memmap]:
    """The cache's arrays, memory-mapped for writing: the logits, or the sparse fields (and a tail's)."""
    if topk is None:
        shapes = {"logits": ((rows, vocab), DTYPES[dtype])}
    else:
        shapes = {
            "indices": ((rows, topk), _index_dtype(vocab)),
            "logp": ((rows, topk), np.float16),
            "target": ((rows,), np.float32),
            "tail": ((rows,), np.float32),
        }
        if width:
            shapes["extra"] = ((rows, width), extra_dtype)
    return {
        name: np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dt, shape=shape)
        for name, (shape, dt) in shapes.items()
    }


def cache_bytes_per_row(meta: dict) -> int:
    """Bytes one target position takes in a cache (dense: V logits; sparse: atkd.losses.tails)."""
    if meta.get("format", "dense") == "dense":
        return int(meta["vocab_size"]) * np.dtype(DTYPES[meta["dtype"]]).itemsize
    tail = meta.get("tail") or {"kind": "bucket", "width": 0}
    return bytes_per_position(int(meta["topk"]), int(meta["vocab_size"]), tail["kind"], int(tail["width"]))


class TeacherCache:
    """A loaded cache (memory-mapped); `aligned(indices, batch)` gives teacher logits for a collated batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{self.path}: not a teacher cache (no meta.json)")
        self.meta = json.loads(meta_file.read_text(encoding="utf-8"))
        self.sparse = self.meta.get("format", "dense") == "sparse"  # caches before `format` were dense
        tail = self.meta.get("tail")
        names = SPARSE_FIELDS if self.sparse else ("logits",)
        names += ("extra",) if tail and tail["width"] else ()
        self.arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in names}
        self.offsets = np.load(self.path / "offsets.npy")
        self.tail_model = None
        if tail and tail["kind"] == "lowrank":
            mean, basis = (torch.from_numpy(np.load(self.path / f"tail_{n}.npy")) for n in ("mean", "basis"))
            self.tail_model = TailModel("lowrank", mean=mean, basis=basis)
        elif tail:
            self.tail_model = TailModel(tail["kind"], eps=float(tail["eps"]))

    def _teacher(self, fields: dict[str, torch.Tensor]) -> torch.Tensor | SparseTeacher:
        if not self.sparse:
            return fields["logits"]
        return SparseTeacher(**fields, tail_model=self.tail_model)

    def check(
        self, train_data: str, tokenizer: PreTrainedTokenizerBase, max_length: int, examples: list[Example]
    ) -> None:
        """Raise ValueError unless the cache was built from this data, tokenizer and max_length."""
        problems = []
        if self.meta["data_sha256"] != sha256_file(train_data):
            problems.append(f"train_data {train_data} differs from the cached {self.meta['train_data']}")
        if self.meta["tokenizer_sha256"] != _tokenizer_hash(tokenizer):
            problems.append("the tokenizer differs")
        if self.meta["max_length"] != max_length:
            problems.append(f"max_length {max_length} != cached {self.meta['max_length']}")
        if not problems and (
            len(examples) != self.meta["examples"]
            or any(
                int(b - a) != e.num_targets for a, b, e in zip(self.offsets[:-1], self.offsets[1:], examples)
            )
        ):
            problems.append("the examples' target counts differ")
        if problems:
            raise ValueError(f"teacher cache {self.path} does not match this run: " + "; ".join(problems))

    def skip(self, n: int) -> None:
        """Read example i at the cache's example n + i from now on (a run that skips the first n records
        of the file the cache was built on; `train_offset`)."""
        self.offsets = self.offsets[n:]

    def rows(self, indices: list[int]) -> torch.Tensor | SparseTeacher:
        """The teacher at the targets of examples `indices`, concatenated in that order as one row: logits
        `[1, N, V]` (float32) or a sparse cache's fields `[1, N, ...]`. A batch whose target positions,
        taken in row-major order, follow the same examples reads them as they are (the targets-only head,
        `atkd.train.step`)."""
        out = {}
        for name, array in self.arrays.items():
            rows = np.concatenate([array[self.offsets[i] : self.offsets[i + 1]] for i in indices])
            ids = name == "indices" or (name == "extra" and self.tail_model.kind == "sampled")
            out[name] = torch.from_numpy(rows.astype(np.int64 if ids else np.float32))[None]
        return self._teacher(out)

    def aligned(self, indices: list[int], batch: dict[str, torch.Tensor]) -> torch.Tensor | SparseTeacher:
        """The teacher at `batch`'s shifted labels, examples `indices` in the batch's row-major order: logits
        [B, T-1, V] (float32, zeros off-target), or a sparse cache's `SparseTeacher` fields [B, T-1, ...]."""
        mask = target_mask(batch)
        flat = self.rows(indices)
        out = {}
        for name in self.arrays:
            rows = (getattr(flat, name) if self.sparse else flat)[0]
            full = torch.zeros(*mask.shape, *rows.shape[1:], dtype=rows.dtype)
            full[mask] = rows
            out[name] = full
        return self._teacher(out)


def _cmd_teacher_cache(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        build_teacher_cache(
            args.teacher,
            args.train_data,
            args.out,
            args.tokenizer,
            args.max_length,
            args.batch_size,
            args.dtype,
            args.device,
            args.topk,
            args.tail,
            args.tail_width,
            args.tail_eps,
        )
    )
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd teacher-cache`."""
    p = subparsers.add_parser(
        "teacher-cache", help="precompute a teacher's logits on ground-truth data for KD"
    )
    p.add_argument("--teacher", required=True, help="teacher checkpoint dir or Hub id")
    p.add_argument("--train-data", required=True, help="the .jsonl the students will be trained on")
    p.add_argument("--out", required=True, help="output directory of the cache")
    p.add_argument("--tokenizer", help="default: the teacher's")
    p.add_argument("--max-length", type=int, default=512, help="must equal the students' max_length")
    p.add_argument(
        "--batch-size",
        type=int,
        help="records per teacher forward pass (default: up to 64, within 1 GiB of float32 logits)",
    )
    p.add_argument("--dtype", choices=list(DTYPES), default="float16", help="storage dtype of the logits")
    p.add_argument("--device", default="auto", help="auto (a GPU where visible), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--topk", type=int, help="keep each position's top K tokens (a sparse cache), not all logits"
    )
    p.add_argument(
        "--tail", choices=ESTIMATORS, default="bucket",
        help="how a sparse cache's tail is read (atkd.losses.tails): one bucket (default), uniform, lowrank "
        "(--tail-width coefficients) or sampled (--tail-width tokens drawn from the teacher)",
    )  # fmt: skip
    p.add_argument("--tail-width", type=int, default=0, help="lowrank rank, or sampled tokens per position")
    p.add_argument("--tail-eps", type=float, default=0.0, help="sampled tail: the uniform share eps")
    p.set_defaults(func=_cmd_teacher_cache)
