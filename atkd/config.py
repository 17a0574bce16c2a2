"""Up-front checks of a study configuration that a JSON schema cannot express.

The workflow validates its config against `workflow/schemas/config.schema.yaml` (structure, types) and
then calls `check_study`, which asks the package itself whether every loss, model and suite named in the
config exists, so that a typo fails before the first job with the list of valid names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atkd.data.suites import GENERATION_SUITES
from atkd.data.suites import SUITE_NAMES as SUITES
from atkd.losses import parse_spec
from atkd.models.ladder import LADDER


def _check_model(where: str, entry: Mapping[str, Any]) -> None:
    if "arch" in entry and "model" in entry:
        raise ValueError(f"{where}: set either 'arch' (ladder name) or 'model' (checkpoint/Hub id), not both")
    arch = entry.get("arch")
    if arch is not None and arch not in LADDER:
        raise ValueError(f"{where}: unknown arch {arch!r}; valid: {', '.join(LADDER)}")


def check_study(config: Mapping[str, Any]) -> None:
    """Raise ValueError naming the config key and the valid choices for anything the package rejects."""
    _check_model("student", config["student"])
    for name, entry in config["teachers"].items():
        _check_model(f"teachers.{name}", entry)
    for name, method in config["methods"].items():
        try:
            parse_spec(method["loss"])
        except ValueError as err:
            raise ValueError(f"methods.{name}.loss: {err}") from None
        if method.get("teacher", True) is False:
            spec = parse_spec(method["loss"])
            if spec.needs_teacher:
                raise ValueError(f"methods.{name}: loss {spec.name!r} needs a teacher but teacher: false")
            if "on" in method.get("atkd", ["off"]):
                raise ValueError(f"methods.{name}: +ATKD needs a teacher; use atkd: [off]")
        elif not parse_spec(method["loss"]).needs_teacher:
            raise ValueError(f"methods.{name}: loss {method['loss']!r} uses no teacher; set teacher: false")
    try:
        parse_spec({"name": "fkl", "atkd": dict(config["atkd"])})
    except ValueError as err:
        raise ValueError(f"atkd: {err}") from None
    for suite in config["evaluation"]["suites"]:
        if suite not in SUITES:
            raise ValueError(f"evaluation.suites: unknown suite {suite!r}; valid: {', '.join(SUITES)}")
    evaluated = config["evaluation"]["suites"]
    for suite, shots in config["evaluation"].get("num_fewshot", {}).items():
        if suite not in evaluated or suite in GENERATION_SUITES:
            valid = [s for s in evaluated if s not in GENERATION_SUITES]
            raise ValueError(
                f"evaluation.num_fewshot: {suite!r} is not an evaluated understanding suite;"
                f" valid: {', '.join(valid)}"
            )
        if not isinstance(shots, int) or shots < 0:
            raise ValueError(f"evaluation.num_fewshot.{suite}: expected a count >= 0, got {shots!r}")
