"""The CLI's lazy dispatch and the light imports every workflow job's Snakefile parse relies on."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from atkd.cli import COMMANDS, build_parser


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_command_map_matches_what_each_module_registers(module):
    """Same commands, same order, same one-line help as the module's own parsers."""
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register_cli(sub)
    assert tuple(sub.choices) == tuple(COMMANDS[module])
    assert {a.dest: a.help for a in sub._choices_actions} == COMMANDS[module]


def test_every_command_and_option_is_described():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert command.description, f"atkd {name}: no description"
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"atkd {name} {'/'.join(action.option_strings) or action.dest}: no help"


def test_help_and_typos_import_no_stage():
    mods = _imported_after(
        "from atkd.cli import main\n"
        "import contextlib, io\n"
        "for argv in (['--help'], ['trian']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        "        main(argv)"
    )
    assert not {m for m in mods if m.startswith("atkd.") and m not in ("atkd.cli",)} - {"atkd"}
    assert not {"torch", "transformers", "lm_eval", "pandas"} & mods


def test_full_parser_has_every_command_once():
    names = [n for names in COMMANDS.values() for n in names]
    assert len(names) == len(set(names))
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(names)


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_workflow_parse_imports_stay_light():
    # What the Snakefile and workflow/rules/common.smk import: every cluster job parses them again.
    mods = _imported_after(
        "from atkd.config import check_study, method_atkd_options\n"
        "from atkd.losses import parse_spec\n"
        "from atkd.fsutil import epoch_dir_name\n"
        "from atkd.train.sampling import parse_sampling\n"
        "from atkd.models import LADDER"
    )
    assert not {"transformers", "lm_eval", "matplotlib", "pandas"} & mods


def test_a_command_imports_only_its_own_stage():
    mods = _imported_after("from atkd.cli import main\nmain(['ladder', '--json'])")
    assert "atkd.models.cli" in mods
    assert not {"atkd.eval.harness", "atkd.report", "atkd.probes", "lm_eval"} & mods
