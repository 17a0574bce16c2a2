"""A KD method added from outside the package: a plugin module registers a loss; configs name it."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import yaml

from atkd.config import check_study
from atkd.losses import DIVERGENCES, build_loss
from atkd.plugins import load_plugin

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "hellinger.py"


def readme_example() -> tuple[str, dict]:
    """The README's worked plugin example: the module's code and the config lines it adds."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- plugin-example:python -->\s*```python\n(.*?)```", text, re.S)
    conf = re.search(r"<!-- plugin-example:yaml -->\s*```yaml\n(.*?)```", text, re.S)
    assert code and conf, "README lost its worked plugin example"
    return code.group(1), yaml.safe_load(conf.group(1))


def test_readme_example_is_the_tested_plugin():
    code, conf = readme_example()
    assert code == PLUGIN.read_text(encoding="utf-8")
    assert conf["plugins"] == ["my_kd.py"] and conf["methods"]["hellinger"]["loss"] == "hellinger"


def test_plugin_registers_a_loss_that_matches_its_formula():
    load_plugin(str(PLUGIN))
    assert "hellinger" in DIVERGENCES
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    labels = torch.randint(0, 11, (2, 5), generator=g)
    labels[0, :2] = -100
    p, q = t.double().softmax(-1), s.double().softmax(-1)
    per_token = 1 - (p * q).sqrt().sum(-1)
    expected = per_token[labels != -100].mean()
    got = build_loss("hellinger")(s, t, labels)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    atkd = build_loss({"name": "hellinger", "atkd": {"k": 0.5, "lam": 0.2}})(s, t, labels)
    assert torch.isfinite(atkd)


def test_loading_by_path_and_by_name_is_idempotent(monkeypatch):
    a = load_plugin(str(PLUGIN))
    assert load_plugin(str(PLUGIN)) is a
    monkeypatch.chdir(ROOT / "tests")
    load_plugin("plugins.hellinger")  # the same file as a module: registers the same function again
    with pytest.raises(ModuleNotFoundError, match="plugin 'no_such_plugin'"):
        load_plugin("no_such_plugin")
    with pytest.raises(FileNotFoundError, match="plugin 'nowhere/x.py': no such file"):
        load_plugin("nowhere/x.py")


def test_config_names_a_plugin_loss(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    with_plugin = copy.deepcopy(cfg)
    with_plugin["plugins"] = [str(PLUGIN)]
    with_plugin["methods"]["hellinger"] = {"loss": "hellinger"}
    check_study(with_plugin)
    missing = copy.deepcopy(with_plugin)
    missing["plugins"] = [str(tmp_path / "absent.py")]
    with pytest.raises(ValueError, match="plugins: plugin .*absent.py.*no such file"):
        check_study(missing)
