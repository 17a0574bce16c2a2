"""Training data: instruction records through the prompt template, or plain text in fixed-size blocks.

Instruction records (`.jsonl` with `instruction`, optional `input`, `output`): prompt (the tokenizer's
chat template if it has one, else the suite's template: atkd.data.template) and response are tokenised
separately (the same prompt tokens evaluation will feed the model), EOS is appended to the response, and
labels are -100 on the prompt, so the loss covers response tokens + EOS only.
Plain text: documents, each followed by EOS, concatenated and cut into blocks; every token is a target
(pre-training). A `.jsonl` file whose records have `text` (and no `instruction`) holds one document per
record, line breaks included (the usual form of a pre-training corpus); any other file one document per
non-blank line (the world's `pretrain.txt`).

Labels are *unshifted* (labels[i] is token i or -100); the loop shifts them against the logits.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from atkd.data.jsonl import is_text_corpus, read_jsonl, read_text_records
from atkd.data.template import format_example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One training sequence: token ids and per-token labels (-100 = no loss), same length."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def num_targets(self) -> int:
        """Number of positions that are a loss target after the shift (all but the first token)."""
        return sum(1 for y in self.labels[1:] if y != IGNORE_INDEX)


def encode_record(record: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Example | None:
    """Tokenise one instruction record with the template; None if the prompt leaves no room for a target.

    Sequences longer than `max_length` are cut at the right (losing the tail of the response and EOS).
    A record with `"complete": false` (a generated answer cut by its token budget) gets no EOS: the
    model that wrote it did not stop there.
    """
    return encode_records([record], tokenizer, max_length)[0]


def encode_records(
    records: Sequence[dict], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[Example | None]:
    """`encode_record` for many records, with one tokenizer call for all prompts and one for all responses
    (the same ids as record by record; a per-record call costs most of a distillation job's start-up)."""
    pairs = [format_example(rec, tokenizer) for rec in records]
    if not pairs:
        return []
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    responses = tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"]
    out: list[Example | None] = []
    for rec, p_ids, r_ids in zip(records, prompts, responses, strict=True):
        if rec.get("complete", True) is not False:
            r_ids = r_ids + [tokenizer.eos_token_id]
        ids = (p_ids + r_ids)[:max_length]
        labels = ([IGNORE_INDEX] * len(p_ids) + r_ids)[:max_length]
        out.append(None if len(p_ids) >= len(ids) or len(ids) < 2 else Example(tuple(ids), tuple(labels)))
    return out


def load_sft(path: str | Path, tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[Example]:
    """Tokenise every record of a JSONL instruction file (records with no room for a target are dropped)."""
    examples, dropped, truncated = [], 0, 0
    records = list(read_jsonl(path, optional={"input": str}))
    for rec, ex in zip(records, encode_records(records, tokenizer, max_length), strict=True):
        if ex is None:
            dropped += 1
            continue
        truncated += rec.get("complete", True) is not False and ex.labels[-1] != tokenizer.eos_token_id
        examples.append(ex)
    if dropped or truncated:
        log.warning(
            "%s: %d records dropped (prompt >= max_length=%d), %d truncated",
            path,
            dropped,
            max_length,
            truncated,
        )
    if not examples:
        raise ValueError(f"{path}: no usable training examples")
    return examples


def _blocks(
    docs: Iterable[str], tokenizer: PreTrainedTokenizerBase, block_size: int, path: Path
) -> list[Example]:
    """Documents, each followed by EOS (so the model learns to stop), as one stream cut into blocks of
    `block_size` tokens (the last one may be shorter)."""
    stream: list[int] = []
    for doc in docs:
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    blocks = [tuple(stream[i : i + block_size]) for i in range(0, len(stream), block_size)]
    blocks = [b for b in blocks if len(b) >= 2]
    if not blocks:
        raise ValueError(f"{path}: no text to train on")
    return [Example(b, b) for b in blocks]


def load_text(path: str | Path, tokenizer: PreTrainedTokenizerBase, block_size: int) -> list[Example]:
    """Cut a plain-text corpus, one document per non-blank line, into blocks of `block_size` tokens."""
    text = Path(path).read_text(encoding="utf-8")
    return _blocks((line for line in text.splitlines() if line.strip()), tokenizer, block_size, Path(path))


def load_text_records(path: str | Path, tokenizer: PreTrainedTokenizerBase, block_size: int) -> list[Example]:
    """Cut a JSON-lines corpus, one document per record's `text` (line breaks kept), into blocks of
    `block_size` tokens; a record without a string `text` fails with the file and line."""
    return _blocks(read_text_records(path), tokenizer, block_size, Path(path))


def load_examples(path: str | Path, tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[Example]:
    """Instruction records (`.jsonl`: template, response-only loss), or a plain-text corpus (a `.jsonl` of
    `text` records, or any other file, one document per line) for language modelling."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training data not found: {path}")
    if path.suffix != ".jsonl":
        return load_text(path, tokenizer, max_length)
    if is_text_corpus(path):
        return load_text_records(path, tokenizer, max_length)
    return load_sft(path, tokenizer, max_length)


def target_mask(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """[B, T-1] positions whose next token is a target: response + EOS of a record (every token of plain
    text), aligned with `logits[:, :-1]`."""
    return batch["labels"][:, 1:] != IGNORE_INDEX


def collate(examples: list[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples to their longest: input_ids, attention_mask, labels (-100 on pad)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# Packed rows are this many times as wide as a batch's longest example: on the default world's data
# (15-77 tokens) rows of the longest leave 18% padding (an example longer than half a row sits alone),
# rows 1.5x as wide 8%, and 1.5 was the fastest of 1, 1.5, 2 and 3 (docs/bench/batching-*.md).
PACK_WIDTH = 1.5


def pack(
    examples: list[Example], pad_token_id: int, width: int | None = None
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Pack examples side by side into rows (first-fit, longest first), so a batch carries little padding
    without changing which examples it holds (random batches stay random). Rows are `width` tokens wide
    (default `PACK_WIDTH` times the longest example; never narrower than it).

    Each example keeps its own positions (`position_ids` restart at 0) and sees only itself: transformers
    turns position ids that restart into a block-diagonal causal mask when no `attention_mask` is given
    (`atkd.train.step.check_packing` verifies that for a model). The first label of every example is
    -100, so no example is trained to predict from the one before it (an unpacked example's first label
    is never used either). Padding fills the end of a row at position 0 (each pad token a segment of its
    own); `token_mask` marks real tokens (not a model input). Returns the batch and the examples' order
    in it (row by row, left to right): the order of the rows a teacher cache must deliver.
    """
    longest = max(len(e.input_ids) for e in examples)
    width = max(longest, math.ceil(PACK_WIDTH * longest) if width is None else width)
    rows: list[list[int]] = []
    free: list[int] = []
    for k in sorted(range(len(examples)), key=lambda k: -len(examples[k].input_ids)):
        n = len(examples[k].input_ids)
        r = next((r for r, room in enumerate(free) if room >= n), None)
        if r is None:
            rows.append([])
            free.append(width)
            r = len(rows) - 1
        rows[r].append(k)
        free[r] -= n
    # Rows are assembled as Python lists and turned into tensors once (a slice assignment per example
    # cost about 5% of a small student's step).
    ids, labels, positions, mask = [], [], [], []
    for row in rows:
        r_ids, r_labels, r_pos = [], [], []
        for k in row:
            e = examples[k]
            r_ids += e.input_ids
            r_labels.append(IGNORE_INDEX)
            r_labels += e.labels[1:]
            r_pos += range(len(e.input_ids))
        pad = width - len(r_ids)
        ids.append(r_ids + [pad_token_id] * pad)
        labels.append(r_labels + [IGNORE_INDEX] * pad)
        positions.append(r_pos + [0] * pad)
        mask.append([1] * len(r_ids) + [0] * pad)
    batch = {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "position_ids": torch.tensor(positions, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "token_mask": torch.tensor(mask, dtype=torch.long),
    }
    return batch, [k for row in rows for k in row]


BATCHINGS = ("random", "bucketed", "packed")
# Batches whose examples are sorted by length together (bucketed batching): on the default world's data
# (lengths 15-77 tokens) 32 batches leave 2.3% padding, against 37% for random batches (docs/bench).
BUCKET_WINDOW = 32


def epoch_order(
    num_examples: int,
    seed: int,
    epoch: int,
    lengths: Sequence[int] | None = None,
    batch_size: int = 1,
) -> list[int]:
    """The example order of one epoch: a permutation that depends only on (seed, epoch).

    Without `lengths`: a random permutation. With `lengths` (bucketed batching): the same permutation is
    cut into windows of `BUCKET_WINDOW` batches, each window is sorted by length and cut into batches of
    `batch_size`, and the full batches of the epoch are shuffled; the batches of the stream then hold
    examples of similar length, so they carry little padding (see `bucketed_order`).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_examples, generator=g).tolist()
    if lengths is None:
        return order
    if len(lengths) != num_examples:
        raise ValueError(f"{len(lengths)} lengths for {num_examples} examples")
    # Step batches start at multiples of batch_size of the stream, which runs through the epochs without a
    # break: the first `head` examples of this epoch complete the batch begun in the previous epoch.
    head = (-epoch * num_examples) % batch_size
    return bucketed_order(order, lengths, batch_size, head, g)


def bucketed_order(
    order: list[int], lengths: Sequence[int], batch_size: int, head: int, generator: torch.Generator
) -> list[int]:
    """`order` rearranged into batches of similar length: its first `head` examples stay first (they
    fill a batch begun before), the rest is cut into windows of `BUCKET_WINDOW * batch_size` examples,
    each sorted by length (ties keep their order) and cut into batches; the full batches are shuffled with
    `generator` and a short last batch stays last (the next epoch's head completes it)."""
    if batch_size < 2 or head >= len(order):
        return list(order)
    rest, span = order[head:], BUCKET_WINDOW * batch_size
    batches = []
    for lo in range(0, len(rest), span):
        window = sorted(rest[lo : lo + span], key=lengths.__getitem__)
        batches.extend(window[i : i + batch_size] for i in range(0, len(window), batch_size))
    tail = batches.pop() if len(batches[-1]) < batch_size else []
    out = list(order[:head])
    for j in torch.randperm(len(batches), generator=generator).tolist():
        out.extend(batches[j])
    return out + tail


def batch_indices(
    num_examples: int,
    seed: int,
    position: int,
    batch_size: int,
    lengths: Sequence[int] | None = None,
) -> list[int]:
    """Indices of the `batch_size` examples starting at stream `position` (epochs follow each other).

    The data position of a run is a single integer (examples consumed), which makes resuming exact.
    With `lengths` the epochs are in bucketed order (`epoch_order`); `position` must then be a multiple
    of `batch_size` for the batch to be one bucket (the training loop's always is).
    """
    key = None if lengths is None else tuple(lengths)
    out: list[int] = []
    order_epoch, order = -1, ()
    for p in range(position, position + batch_size):
        epoch = p // num_examples
        if epoch != order_epoch:
            order_epoch, order = epoch, _cached_order(num_examples, seed, epoch, key, batch_size)
        out.append(order[p % num_examples])
    return out


@functools.lru_cache(maxsize=4)
def _cached_order(
    num_examples: int, seed: int, epoch: int, lengths: tuple[int, ...] | None, batch_size: int
) -> tuple[int, ...]:
    """`epoch_order`, computed once per epoch rather than at every step."""
    return tuple(epoch_order(num_examples, seed, epoch, lengths, batch_size))


def padding_share(batches: Iterable[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of the tokens of right-padded `batches` (lists of example indices) that are padding."""
    total = real = 0
    for batch in batches:
        width = max(lengths[i] for i in batch)
        total += width * len(batch)
        real += sum(lengths[i] for i in batch)
    return 1.0 - real / max(total, 1)
