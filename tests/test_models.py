"""Tokenizer and model ladder: round trips, single-digit tokens, sizes, from_pretrained identity."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from atkd.models import (
    DEFAULT_STUDENT,
    DEFAULT_TEACHERS,
    LADDER,
    build_model,
    count_params,
    load_model,
    load_tokenizer,
    save_model,
    train_tokenizer,
)
from atkd.models.tokenizer import EOS_TOKEN, PAD_TOKEN

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tokenizer_round_trip_and_single_digit_tokens(world):
    tok = load_tokenizer(world["tokenizer"])
    assert isinstance(AutoTokenizer.from_pretrained(str(world["tokenizer"])), type(tok))
    texts = [
        "### Instruction:\nAdd 12345 and 678.\n### Response:\n13023",
        "  two  spaces, tabs\tand\nnewlines\n\n",
        "unicode: naïve café ✓ 😀 日本",
        "x9y 0.5 -42 1e10",
    ]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
        for piece in tok.convert_ids_to_tokens(ids):
            if any(c.isdigit() for c in piece):
                assert len(piece) == 1, f"digit merged into token {piece!r}"
    assert (
        tok(texts[0])["input_ids"] == tok(texts[0], add_special_tokens=False)["input_ids"]
    )  # no BOS/EOS added
    assert tok.eos_token == EOS_TOKEN and tok.pad_token == PAD_TOKEN
    assert tok.eos_token_id != tok.pad_token_id
    assert len(tok) <= 320


def test_tokenizer_rejects_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


def test_ladder_sizes_increase_and_span():
    params = {name: count_params(build_model(name, vocab_size=1024)) for name in LADDER}
    ordered = [params[n] for n in LADDER]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)
    teachers = [params[n] for n in DEFAULT_TEACHERS]
    assert len(teachers) >= 3 and teachers == sorted(teachers)
    assert teachers[-1] / teachers[0] >= 8
    assert params[DEFAULT_STUDENT] < teachers[0]


def test_build_model_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = (build_model("neox-32x2", 300, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = (m.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(KeyError, match="known"):
        build_model("neox-7x1", 300)


def test_save_load_round_trip_identical_logits(world, tmp_path):
    tok = load_tokenizer(world["tokenizer"])
    model = build_model(
        "neox-48x2", len(tok), seed=3, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    ).eval()
    out = save_model(model, tmp_path / "m", tok)
    assert (out / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".m.tmp-*"))  # atomic write left no temp dir
    loaded = load_model(out).eval()
    assert isinstance(loaded, type(AutoModelForCausalLM.from_pretrained(str(out))))
    assert loaded.config.model_type == "gpt_neox"
    ids = tok(["Add 1 and 2.", "Reverse the list."], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**ids).logits
        got = loaded(**ids).logits
    assert torch.equal(want, got)
    assert load_tokenizer(out).get_vocab() == tok.get_vocab()


def test_cli_tokenizer_init_model_ladder(world, tmp_path, capsys):
    from atkd.cli import main

    assert (
        main(
            [
                "tokenizer",
                "--train",
                str(world["train"]),
                str(world["text"]),
                "--vocab-size",
                "300",
                "--out",
                str(tmp_path / "tok"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "init-model",
                "--arch",
                "neox-32x2",
                "--tokenizer",
                str(tmp_path / "tok"),
                "--seed",
                "5",
                "--out",
                str(tmp_path / "init"),
            ]
        )
        == 0
    )
    assert main(["ladder", "--json"]) == 0
    model = load_model(tmp_path / "init")
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert torch.equal(
        model.gpt_neox.embed_in.weight,
        build_model("neox-32x2", model.config.vocab_size, seed=5).gpt_neox.embed_in.weight,
    )
    assert '"neox-48x2"' in capsys.readouterr().out


def test_resolve_device_auto_picks_a_visible_gpu_or_the_cpu():
    from atkd.models import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def _tiny(kind: str) -> torch.nn.Module:
    """A randomly initialised 4-layer model of a decoder layout `keep_layers` supports."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, OPTConfig

    small = dict(vocab_size=64, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    config = {
        "llama": lambda: LlamaConfig(num_hidden_layers=4, num_key_value_heads=2, **small),
        "neox": lambda: GPTNeoXConfig(num_hidden_layers=4, **small),
        "opt": lambda: OPTConfig(
            vocab_size=64,
            hidden_size=32,
            num_attention_heads=4,
            ffn_dim=64,
            num_hidden_layers=4,
            word_embed_proj_dim=32,
        ),
        "gpt2": lambda: GPT2Config(vocab_size=64, n_embd=32, n_head=4, n_layer=4),
    }[kind]()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("kind", ["llama", "neox", "opt", "gpt2"])
def test_keep_layers_cuts_a_model_to_a_subset_of_its_own_layers(kind, tmp_path):
    """The cut model has the kept layers' own weights, saves and reloads as that architecture, and its
    KV cache works (renumbered attention layers): cached greedy decoding equals uncached."""
    from atkd.models.layers import _layer_list, keep_layers, parse_layers

    model = _tiny(kind)
    parent, attr, _ = _layer_list(model)
    originals = [{k: v.clone() for k, v in layer.state_dict().items()} for layer in getattr(parent, attr)]
    keep_layers(model, parse_layers("0,2,3"))
    kept = getattr(parent, attr)
    assert len(kept) == 3
    for layer, source in zip(kept, [originals[0], originals[2], originals[3]], strict=True):
        assert all(torch.equal(v, source[k]) for k, v in layer.state_dict().items())
    model.save_pretrained(tmp_path / "cut")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "cut").eval()
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, model(ids).logits, atol=1e-6)
        kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
        cached = again.generate(ids, use_cache=True, **kw)
        uncached = again.generate(ids, use_cache=False, **kw)
    assert torch.equal(cached, uncached)


def test_keep_layers_rejects_bad_indices():
    from atkd.models.layers import keep_layers, parse_layers

    with pytest.raises(ValueError, match=r"strictly increasing indices from 0 to 3 .* has 4 decoder layers"):
        keep_layers(_tiny("llama"), [0, 4])
    with pytest.raises(ValueError, match="strictly increasing"):
        keep_layers(_tiny("llama"), [2, 1])
    with pytest.raises(ValueError, match="comma-separated layer indices"):
        parse_layers("0,x")
