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
from atkd.eval.harness import check_benchmarks, check_instruct_sets
from atkd.losses import parse_spec
from atkd.models.shapes import LADDER
from atkd.plugins import load_plugins
from atkd.train.sampling import parse_sampling


def _check_model(where: str, entry: Mapping[str, Any]) -> None:
    if "arch" in entry and "model" in entry:
        raise ValueError(f"{where}: set either 'arch' (ladder name) or 'model' (checkpoint/Hub id), not both")
    arch = entry.get("arch")
    if arch is not None and arch not in LADDER:
        raise ValueError(f"{where}: unknown arch {arch!r}; valid: {', '.join(LADDER)}")


def _spec(where: str, spec: Any, atkd: Mapping[str, Any] | None = None) -> Any:
    if atkd is not None:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        spec["atkd"] = dict(atkd)
    try:
        return parse_spec(spec)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _check_method(name: str, method: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    where = f"methods.{name}"
    loss = _spec(f"{where}.loss", method["loss"])
    try:
        sampling = parse_sampling(method.get("sampling"))
    except ValueError as err:
        raise ValueError(f"{where}.{err}") from None
    variants = method.get("atkd", ["off"] if method.get("teacher", True) is False else ["off", "on"])
    if "on" in variants:
        key = "atkd_loss" if "atkd_loss" in method else "loss"
        _spec(f"{where}.{key}", method[key], method_atkd_options(config, name))
    elif "atkd_options" in method:
        raise ValueError(f"{where}.atkd_options: the method has no +ATKD variant (atkd: {variants})")
    if method.get("teacher", True) is False:
        if loss.needs_teacher:
            raise ValueError(f"{where}: loss {loss.name!r} needs a teacher but teacher: false")
        if "on" in variants:
            raise ValueError(f"{where}: +ATKD needs a teacher; use atkd: [off]")
        extra = [
            k for k in ("sampling", "teachers", "teacher_epochs", "assistant", "atkd_loss") if k in method
        ]
        if extra or sampling.source != "ground_truth":
            raise ValueError(
                f"{where}: {', '.join(extra) or 'sampling'} needs a teacher; remove it or the teacher: false"
            )
        return
    if not loss.needs_teacher and sampling.source != "teacher":
        raise ValueError(f"{where}: loss {loss.name!r} uses no teacher; set teacher: false")
    teachers = list(config["teachers"])
    chosen = method.get("teachers", "all")
    for t in [] if chosen == "all" else chosen:
        if t not in teachers:
            raise ValueError(f"{where}.teachers: unknown teacher {t!r}; valid: {', '.join(teachers)}")
    if "teacher_epochs" in method and "assistant" in method:
        raise ValueError(f"{where}: set teacher_epochs (early-stopped teacher) or assistant, not both")
    if "assistant" in method and method["assistant"] not in teachers:
        raise ValueError(
            f"{where}.assistant: unknown teacher {method['assistant']!r}; valid: {', '.join(teachers)}"
        )
    if "teacher_epochs" in method:
        total = config["teacher_train"].get("epochs")
        if total is not None and not 0 < method["teacher_epochs"] < total:
            raise ValueError(f"{where}.teacher_epochs: must be in (0, {total}) (teacher_train.epochs)")


def method_atkd_options(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The +ATKD options of method `name`: the top-level `atkd` section, then the method's own
    `atkd_options` (explicit `groups` there replace the top-level `lam`)."""
    own = config["methods"][name].get("atkd_options", {})
    merged = dict(config.get("atkd", {}))
    if "groups" in own:
        merged.pop("lam", None)
    return merged | dict(own)


def check_study(config: Mapping[str, Any]) -> None:
    """Raise ValueError naming the config key and the valid choices for anything the package rejects."""
    _check_model("student", config["student"])
    for name, entry in config["teachers"].items():
        _check_model(f"teachers.{name}", entry)
    try:
        load_plugins(config.get("plugins", []))
    except (ImportError, OSError) as err:
        raise ValueError(f"plugins: {err}") from None
    for name, method in config["methods"].items():
        _check_method(name, method, config)
    try:
        parse_spec({"name": "fkl", "atkd": dict(config["atkd"])})
    except ValueError as err:
        raise ValueError(f"atkd: {err}") from None
    student = config["student"]
    if student.get("pretrained") and "model" not in student:
        raise ValueError("student.pretrained: a pre-trained base needs `model` (a Hub id or checkpoint)")
    if "data" in config and config["evaluation"]["suites"]:
        raise ValueError(
            "evaluation.suites: the synthetic world's suites need `world:`; with `data:` use instruct_sets"
            " and benchmarks"
        )
    e = config["evaluation"]
    if not (e["suites"] or e.get("instruct_sets") or e.get("benchmarks")):
        raise ValueError("evaluation: nothing to evaluate (no suites, instruct_sets or benchmarks)")
    if e.get("judge") and not e.get("instruct_sets"):
        raise ValueError("evaluation.judge: the LLM judge scores instruct_sets, and none is configured")
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
    try:
        check_instruct_sets(config["evaluation"].get("instruct_sets"))
    except (ValueError, OSError) as err:
        raise ValueError(f"evaluation.instruct_sets: {err}") from None
    for name, spec in config.get("analyses", {}).items():
        variant = spec.get("atkd", "off")
        for method in spec["members"]:
            if method not in config["methods"]:
                valid = ", ".join(config["methods"])
                raise ValueError(f"analyses.{name}.members: unknown method {method!r}; valid: {valid}")
            entry = config["methods"][method]
            default = ["off"] if entry.get("teacher", True) is False else ["off", "on"]
            if variant not in entry.get("atkd", default):
                raise ValueError(f"analyses.{name}: method {method!r} has no atkd={variant!r} run")
    landscape = config.get("landscape", {})
    for key, valid in (("methods", config["methods"]), ("teachers", config["teachers"])):
        for name in landscape.get(key, []):
            if name not in valid:
                raise ValueError(f"landscape.{key}: unknown name {name!r}; valid: {', '.join(valid)}")
    if config["evaluation"].get("benchmarks"):
        try:
            check_benchmarks(config["evaluation"]["benchmarks"])
        except ValueError as err:
            raise ValueError(f"evaluation.benchmarks: {err}") from None
