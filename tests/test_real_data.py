"""The paper-profile code paths, offline: real instruction data (a local file, or a dataset directory read
by `datasets.load_dataset` exactly as a Hub id is), models built from the real Pythia and OPT
configurations (shrunk) and loaded through `from_pretrained` as a Hub id would be, `atkd export-model`,
a copied tokenizer, and one KD step between them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.tiny_world import records
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, OPTConfig, OPTForCausalLM

from atkd.cli import main as atkd
from atkd.data.real import load_records, write_data
from atkd.models import load_model
from atkd.models.tokenizer import load_tokenizer

# The real configurations' architecture fields (EleutherAI/pythia-160m, facebook/opt-125m), shrunk in
# width and depth so that a test runs in seconds; everything else is what the Hub configs say.
PYTHIA = dict(
    hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
    max_position_embeddings=2048, layer_norm_eps=1e-5, tie_word_embeddings=False,
)  # fmt: skip
OPT = dict(
    activation_function="relu", do_layer_norm_before=True, max_position_embeddings=2048,
    enable_bias=True, layer_norm_elementwise_affine=True,
)  # fmt: skip


def pythia_like(tok, hidden=64, layers=2, vocab=None, seed=0):
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=vocab or len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=4 * hidden, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, **PYTHIA,
    )  # fmt: skip
    return GPTNeoXForCausalLM(cfg)


def opt_like(tok, hidden=64, layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = OPTConfig(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, ffn_dim=4 * hidden,
        num_attention_heads=4, word_embed_proj_dim=hidden, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, **OPT,
    )  # fmt: skip
    return OPTForCausalLM(cfg)


def kd_run(student, teacher, world, out, **fields):
    """One short forward-KL run of `student` from `teacher` on the tiny world; the final model dir."""
    from atkd.train import train

    config = dict(model=student, teacher=teacher, train_data=str(world["train"]), output_dir=str(out))
    config.update(loss="fkl", max_steps=2, batch_size=4, lr=1e-3, progress=False, checkpoint_every=None)
    return train(config | fields)


def save_hub_like(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_data_from_a_file_and_from_a_dataset_directory(tmp_path):
    rows = records(30, seed=3) + [{"instruction": "  ", "output": "dropped"}]
    jsonl = tmp_path / "alpaca.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = write_data(str(jsonl), tmp_path / "a", n_valid=5, seed=1)
    assert manifest["counts"] == {"train": 25, "valid": 5} and manifest["dropped_empty"] == 1
    train = [json.loads(x) for x in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    assert set(train[0]) == {"instruction", "input", "output"}
    # the same records as a dataset directory, under other column names, through datasets.load_dataset
    ds_dir = tmp_path / "hub-like"
    ds_dir.mkdir()
    renamed = [
        {"prompt": r["instruction"], "context": r.get("input", ""), "answer": r["output"]} for r in rows
    ]
    (ds_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in renamed))
    fields = {"instruction": "prompt", "input": "context", "output": "answer"}
    again = write_data(str(ds_dir), tmp_path / "b", n_valid=5, seed=1, fields=fields)
    assert again["sha256"] == manifest["sha256"]  # identical files either way
    # malformed data: file and line; a missing column: its name
    jsonl.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"alpaca.jsonl:2: invalid JSON"):
        load_records(str(jsonl))
    with pytest.raises(ValueError, match="record 1 has no column 'output'"):
        load_records(str(ds_dir), fields={"instruction": "prompt"})
    with pytest.raises(ValueError, match="leaves no training records"):
        write_data(str(ds_dir), tmp_path / "c", n_valid=100, fields=fields)


@pytest.mark.parametrize("family", ["pythia", "opt"])
def test_hub_shaped_models_through_export_tokenizer_and_a_kd_step(world, tmp_path, family):
    tok = load_tokenizer(world["tokenizer"])
    build = pythia_like if family == "pythia" else opt_like
    student = save_hub_like(build(tok, hidden=32, seed=0), tok, tmp_path / "student")
    teacher = save_hub_like(build(tok, hidden=64, seed=1), tok, tmp_path / "teacher")
    assert atkd(["tokenizer", "--from-model", student, "--out", str(tmp_path / "tok")]) == 0
    assert load_tokenizer(tmp_path / "tok").get_vocab() == tok.get_vocab()
    assert atkd(["export-model", "--model", student, "--out", str(tmp_path / "base")]) == 0
    summary = json.loads((tmp_path / "base" / "train_summary.json").read_text())
    assert summary["trained"] is False
    a, b = load_model(student), load_model(tmp_path / "base" / "final")
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    for fused in (False, True):
        base = str(tmp_path / "base" / "final")
        out = kd_run(
            base,
            teacher,
            world,
            tmp_path / f"run-{fused}",
            loss={"name": "fkl", "atkd": {}},
            fused_head=fused,
        )
        assert (out / "config.json").is_file()


def test_a_teacher_with_padded_vocabulary_rows(world, tmp_path):
    """Pythia-6.9B's output layer has 50432 rows, the smaller models' 50304, over one tokenizer: the extra
    rows are padding and are cut from the teacher's logits."""
    tok = load_tokenizer(world["tokenizer"])
    student = save_hub_like(pythia_like(tok, hidden=32), tok, tmp_path / "student")
    teacher = save_hub_like(
        pythia_like(tok, hidden=64, vocab=len(tok) + 64, seed=1), tok, tmp_path / "teacher"
    )
    assert (kd_run(student, teacher, world, tmp_path / "run") / "config.json").is_file()
    narrow = save_hub_like(pythia_like(tok, hidden=64, vocab=len(tok) - 8, seed=1), tok, tmp_path / "narrow")
    with pytest.raises(ValueError, match="KD needs one shared tokenizer"):
        kd_run(student, narrow, world, tmp_path / "narrow-run")


def test_the_committed_dolly_split_is_the_script_s_output(tmp_path):
    """data/smollm2-cpu/: 400 training and 100 held-out DollyEval records, disjoint, all of the set, and
    exactly what scripts/split_instruct.py writes (so the split can be remade and checked)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("split_instruct", root / "scripts" / "split_instruct.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (
        module.main(
            [str(root / "data/instruct-eval/dolly.jsonl"), "--test", "100", "--out", str(tmp_path / "d")]
        )
        == 0
    )
    for part in ("train", "test"):
        committed = (root / f"data/smollm2-cpu/dolly-{part}.jsonl").read_text(encoding="utf-8")
        assert (tmp_path / f"d-{part}.jsonl").read_text(encoding="utf-8") == committed
    train, test = module.split(root / "data/instruct-eval/dolly.jsonl", 100, 0)
    key = lambda r: (r["instruction"], r["input"], r["output"])  # noqa: E731
    assert len(train) == 400 and len(test) == 100 and not {key(r) for r in train} & {key(r) for r in test}
