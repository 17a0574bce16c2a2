"""Byte-level BPE tokenizer trained from scratch, saved as a Hugging Face tokenizer directory.

Why from scratch: no Hub downloads are possible for the embedded default, and a small vocabulary (~1024)
keeps the tiny models' embedding and softmax cheap. Digits are always split into single tokens: with
BPE-merged digit chunks the tiny models could not learn addition at all.

The result is saved as a `PreTrainedTokenizerFast` directory, so downstream code loads it with
`AutoTokenizer.from_pretrained(path)`, exactly as it would load a Hub id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from atkd.data.jsonl import is_text_corpus, read_jsonl, read_text_records
from atkd.data.template import format_example
from atkd.fsutil import atomic_dir
from atkd.models import gguf

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
DEFAULT_VOCAB_SIZE = 1024


def _build_untrained(vocab_size: int) -> tuple[Tokenizer, trainers.BpeTrainer]:
    tok = Tokenizer(models.BPE())
    # Digits first (each digit its own pre-token, so BPE can never merge them), then GPT-2 byte-level.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tok, trainer


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (single-digit tokens, EOS and PAD specials) on `texts`.

    No special tokens are added automatically when encoding; callers append EOS themselves.
    """
    min_size = 256 + 2  # the byte alphabet plus the two special tokens
    if vocab_size < min_size:
        raise ValueError(f"vocab_size must be at least {min_size} (256 bytes + EOS + PAD), got {vocab_size}")
    tok, trainer = _build_untrained(vocab_size)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=None,
        pad_token=PAD_TOKEN,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )


def iter_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """Yield training texts from files: `.jsonl` instruction records go through the prompt template
    (prompt + response, so the template's headers become tokens), a `.jsonl` corpus of `text` records
    yields its documents, any other file its non-empty lines (as the trainer reads them: atkd.train.data).
    """
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer training file not found: {path}")
        if path.suffix == ".jsonl" and is_text_corpus(path):
            yield from read_text_records(path)
        elif path.suffix == ".jsonl":
            for record in read_jsonl(path):
                prompt, response = format_example(record)
                yield prompt + response
        else:
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield line.rstrip("\n")


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> Path:
    """Save a tokenizer as a Hugging Face directory, atomically (temp dir, then rename)."""
    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def load_tokenizer(path_or_hub_id: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer through `AutoTokenizer.from_pretrained` (local dir or Hub id, same code path).

    A tokenizer without a PAD token (e.g. Pythia's) gets its EOS token as PAD; padding is never trained.
    """
    if gguf.is_gguf(path_or_hub_id):
        tok = gguf.load(path_or_hub_id, "tokenizer")
    else:
        tok = AutoTokenizer.from_pretrained(str(path_or_hub_id))
    if tok.eos_token_id is None:
        raise ValueError(
            f"tokenizer {path_or_hub_id} has no EOS token; the loss trains EOS, so one is needed"
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
