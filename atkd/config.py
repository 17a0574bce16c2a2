"""Up-front checks of a study configuration, before any job runs.

The workflow first calls `check_schema` (structure and types, against
`workflow/schemas/config.schema.yaml`), then `check_study`, which asks the package itself whether every
loss, model and suite named in the config exists. Either raises `ConfigError`: one line naming the key path,
what is wrong and the valid values, with a "did you mean" for a near miss; never the schema or the config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atkd.data.jsonl import read_jsonl
from atkd.data.suites import GENERATION_SUITES
from atkd.data.suites import SUITE_NAMES as SUITES
from atkd.data.world import WORLD_VERSION
from atkd.eval.benchmarks import check_benchmarks
from atkd.eval.instruct_sets import check_instruct_sets
from atkd.fsutil import epoch_dir_name
from atkd.losses import parse_spec
from atkd.models.gguf import check as check_gguf
from atkd.models.gguf import is_gguf
from atkd.models.shapes import LADDER
from atkd.plugins import load_plugins
from atkd.train.sampling import parse_sampling
from atkd.zoo import ZooError
from atkd.zoo import check_world as check_zoo_world
from atkd.zoo import verify as verify_zoo

# What a method's `train:` may set over the `distill:` section for its own runs: optimisation, budget and
# validation. Not max_length (the teacher cache is computed at distill.max_length), not the model fields.
METHOD_TRAIN_KEYS = (
    "epochs",
    "max_steps",
    "batch_size",
    "micro_batch_size",
    "lr",
    "min_lr_ratio",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "checkpoint_every",
    "eval_every",
    "eval_points",
    "valid_limit",
    "train_limit",
    "train_offset",
    "bf16",
    "fused_head",
    "targets_only",
    "batching",
)
_DEFAULT_EPOCHS = 1.0  # atkd.train.TrainConfig.epochs (not imported: the workflow's parse stays light)


class ConfigError(ValueError):
    """A configuration error: the message names the key path and the valid values."""


# Names users bring from other toolkits, and the key they mean here.
_ALIASES = {"learning_rate": "lr", "num_epochs": "epochs", "n_epochs": "epochs", "seed": "seeds"}


def _near(word: str, valid: Any) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    valid = [str(v) for v in valid]
    if _ALIASES.get(str(word)) in valid:
        return f" (did you mean {_ALIASES[str(word)]!r}?)"
    close = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_message(err: Any) -> str:
    """One line for one jsonschema error: key path, the problem, the valid values."""
    path = ".".join(str(p) for p in err.absolute_path) or "config"
    schema, value, kind = err.schema, err.instance, err.validator
    if kind == "additionalProperties" and isinstance(value, Mapping):
        valid = sorted(schema.get("properties", {}))
        unknown = [k for k in value if k not in valid]
        if valid and unknown:
            key = unknown[0]
            where = f"{path}.{key}" if err.absolute_path else key
            return f"{where}: unknown key{_near(key, valid)}; valid keys here: {', '.join(valid)}"
    if kind == "required":
        missing = re.match(r"'([^']+)'", err.message)
        key = missing.group(1) if missing else err.message
        return f"{path}: the key {key!r} is required"
    if kind == "minProperties" and isinstance(value, Mapping) and not value:
        return f"{path}: must not be empty"
    if kind == "minItems" and isinstance(value, list) and not value:
        return f"{path}: must not be empty"
    if kind == "enum":
        valid = ", ".join(map(str, err.validator_value))
        return f"{path}: {_short(value)} is not allowed{_near(value, err.validator_value)}; valid: {valid}"
    if kind == "type":
        wanted = err.validator_value
        wanted = wanted if isinstance(wanted, str) else " or ".join(wanted)
        return f"{path}: expected {wanted}, got {_short(value)}"
    if kind == "oneOf" and not err.absolute_path:
        return "config: give exactly one of `world:` (the synthetic world) or `data:` (real data), not both"
    message = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    return f"{path}: {message}"


def check_renamed_keys(config: Mapping[str, Any]) -> None:
    """Keys that were once all called `atkd` have distinct names now; an old config fails naming the new
    key (before the schema check, whose message would only say the old key is not allowed)."""
    if "atkd" in config:
        raise ConfigError(
            "atkd: renamed atkd_options (the +ATKD options, k and lam, every +ATKD variant uses); a method's"
            " own overrides stay methods.NAME.atkd_options"
        )
    for name, method in (config.get("methods") or {}).items():
        if isinstance(method, Mapping) and "atkd" in method:
            raise ConfigError(
                f'methods.{name}.atkd: renamed variants (which runs exist: ["off", "on"], ["off"] or'
                ' ["on"]); a loss\'s own `atkd:` (its token split) keeps its name'
            )
    for section in ("analyses", "comparisons"):
        entries = config.get(section) or {}
        for key, entry in entries.items() if isinstance(entries, Mapping) else enumerate(entries):
            if isinstance(entry, Mapping) and "atkd" in entry:
                where = f"{section}.{key}" if section == "analyses" else f"{section}[{key}]"
                raise ConfigError(
                    f"{where}.atkd: renamed variant (off or on{', or both' * (section == 'comparisons')})"
                )


def check_schema(config: Mapping[str, Any], schema_path: str | Path) -> None:
    """Raise ConfigError for the most relevant violation of the workflow's JSON schema, in one line
    (renamed keys first, by their new names)."""
    import jsonschema
    import yaml

    check_renamed_keys(config)

    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(config)))
    if error is not None:
        raise ConfigError(_schema_message(error))


def _check_model(where: str, entry: Mapping[str, Any]) -> None:
    if "arch" in entry and "model" in entry:
        raise ConfigError(
            f"{where}: set either 'arch' (ladder name) or 'model' (checkpoint/Hub id), not both"
        )
    arch = entry.get("arch")
    if arch is not None and arch not in LADDER:
        valid = ", ".join(LADDER)
        raise ConfigError(f"{where}.arch: unknown arch {arch!r}{_near(arch, LADDER)}; valid: {valid}")
    model = entry.get("model")
    if is_gguf(model):  # a GGUF file or package: present, and readable (the install command if not)
        try:
            check_gguf(model)
        except ValueError as err:
            raise ConfigError(f"{where}.{err}") from None
    elif isinstance(model, str) and _looks_local(model) and not Path(model).expanduser().exists():
        raise ConfigError(
            f"{where}.model: {model!r} looks like a local path and does not exist (a Hub id is"
            " 'owner/name'; a local checkpoint is a directory with config.json)"
        )


def _looks_local(model: str) -> bool:
    """A path, not a Hub id: starts with / . ~, or has more than one '/', or ends in a file suffix."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or model.endswith(".gguf")


def _spec(where: str, spec: Any, atkd: Mapping[str, Any] | None = None) -> Any:
    if atkd is not None:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        spec["atkd"] = dict(atkd)
    try:
        return parse_spec(spec)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


# What a method produced by a user's rule (`rule:`) may set: which runs exist, and `params`, the rule's own
# settings (passed on untouched). How it trains is the rule's.
RULE_METHOD_KEYS = ("rule", "loss", "teacher", "teachers", "seeds", "variants", "atkd_options", "params")


def _check_rule_method(where: str, method: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    if extra := [k for k in method if k not in RULE_METHOD_KEYS]:
        raise ConfigError(
            f"{where}.{extra[0]}: a method produced by a rule sets only {', '.join(RULE_METHOD_KEYS)};"
            " how it trains is up to its rule"
        )
    if not config.get("workflow_plugins"):
        raise ConfigError(
            f"{where}.rule: rule {method['rule']!r} needs the file defining it in workflow_plugins"
        )
    teachers = list(config["teachers"])
    for t in [] if method.get("teachers", "all") == "all" else method["teachers"]:
        if t not in teachers:
            raise ConfigError(f"{where}.teachers: unknown teacher {t!r}; valid: {', '.join(teachers)}")


def _check_split_batching(
    where: str, split_key: str, spec: Any, config: Mapping[str, Any], name: str
) -> None:
    """A packed row holds several examples, so a token split ranked per sequence would rank per row."""
    if spec.atkd is None or spec.atkd.split != "sequence":
        return
    fields = distill_fields(config, name)
    if fields.get("batching") == "packed":
        batching_key = (
            f"{where}.train.batching"
            if "batching" in config["methods"][name].get("train", {})
            else "distill.batching"
        )
        raise ConfigError(
            f"{where}: batching: packed puts several examples in one row, so the +ATKD split: sequence would"
            f" rank tokens per packed row, not per example; set {batching_key}: random or bucketed, or"
            f" {split_key}: batch"
        )


def _check_method(name: str, method: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    where = f"methods.{name}"
    if "rule" in method:
        return _check_rule_method(where, method, config)
    if "params" in method:
        raise ConfigError(f"{where}.params: only a method produced by a rule (`rule:`) takes params")
    for key in method.get("train", {}):
        if key not in METHOD_TRAIN_KEYS:
            raise ConfigError(
                f"{where}.train: unknown or fixed key {key!r}; valid: {', '.join(METHOD_TRAIN_KEYS)}"
            )
    loss = _spec(f"{where}.loss", method["loss"])
    if "stateful" in method:
        from atkd.losses import build_loss
        from atkd.train.stateful import build_stateful

        try:
            built = build_stateful(method["stateful"], build_loss(method["loss"]), total_steps=1)
        except ValueError as err:
            raise ConfigError(f"{where}.{err}") from None
        cache = config.get("teacher_cache", {})
        sparse = cache.get("enabled", True) and cache.get("topk") and method.get("teacher_cache", True)
        if getattr(built, "dense_teacher", False) and sparse:
            raise ConfigError(
                f"{where}.stateful: {method['stateful']['name']} needs the teacher's full logits, and"
                f" teacher_cache.topk: {cache['topk']} keeps the top {cache['topk']} only; set"
                f" {where}.teacher_cache: false (a live teacher) or drop teacher_cache.topk"
            )
    try:
        sampling = parse_sampling(method.get("sampling"))
    except ValueError as err:
        raise ConfigError(f"{where}.{err}") from None
    variants = method.get("variants", ["off"] if method.get("teacher", True) is False else ["off", "on"])
    _check_split_batching(where, f"{where}.loss.atkd.split", loss, config, name)
    if "on" in variants:
        key = "atkd_loss" if "atkd_loss" in method else "loss"
        on = _spec(f"{where}.{key}", method[key], method_atkd_options(config, name))
        own = "split" in method.get("atkd_options", {})
        _check_split_batching(
            where, f"{where}.atkd_options.split" if own else "atkd_options.split", on, config, name
        )
    elif "atkd_options" in method:
        raise ConfigError(f"{where}.atkd_options: the method has no +ATKD variant (variants: {variants})")
    if method.get("teacher", True) is False:
        if loss.needs_teacher:
            raise ConfigError(f"{where}: loss {loss.name!r} needs a teacher but teacher: false")
        if "on" in variants:
            raise ConfigError(f"{where}: +ATKD needs a teacher; use variants: [off]")
        extra = [
            k for k in ("sampling", "teachers", "teacher_epochs", "assistant", "atkd_loss") if k in method
        ]
        if extra or sampling.source != "ground_truth":
            raise ConfigError(
                f"{where}: {', '.join(extra) or 'sampling'} needs a teacher; remove it or the teacher: false"
            )
        return
    if not loss.needs_teacher and sampling.source != "teacher":
        raise ConfigError(f"{where}: loss {loss.name!r} uses no teacher; set teacher: false")
    teachers = list(config["teachers"])
    chosen = method.get("teachers", "all")
    for t in [] if chosen == "all" else chosen:
        if t not in teachers:
            raise ConfigError(f"{where}.teachers: unknown teacher {t!r}; valid: {', '.join(teachers)}")
    if "teacher_epochs" in method and "assistant" in method:
        raise ConfigError(f"{where}: set teacher_epochs (early-stopped teacher) or assistant, not both")
    if "assistant" in method and method["assistant"] not in teachers:
        raise ConfigError(
            f"{where}.assistant: unknown teacher {method['assistant']!r}; valid: {', '.join(teachers)}"
        )
    if "teacher_epochs" in method:
        chosen_teachers = teachers if chosen == "all" else list(chosen)
        early = epoch_dir_name(method["teacher_epochs"])
        frozen = [t for t in chosen_teachers if config["teachers"][t].get("finetune", True) is False]
        for t in frozen:  # used as it is: its early-stopped checkpoint must come with it (the zoo's do)
            if not Path(f"{config['teachers'][t]['model']}@{early}").is_dir():
                raise ConfigError(
                    f"{where}.teacher_epochs: teacher {t!r} is not fine-tuned here (finetune: false) and no"
                    f" early checkpoint {config['teachers'][t]['model']}@{early} comes with it; name other"
                    " teachers in `teachers:`"
                )
        total = config["teacher_train"].get("epochs")
        tuned = len(frozen) < len(chosen_teachers)
        if tuned and total is not None and not 0 < method["teacher_epochs"] < total:
            raise ConfigError(f"{where}.teacher_epochs: must be in (0, {total}) (teacher_train.epochs)")


def method_variants(method: Mapping[str, Any]) -> list[str]:
    """Which runs a method has: without and with ATKD, unless it says otherwise (`variants:`), has no
    teacher (off only) or is produced by a user's rule (off unless it lists both)."""
    if method.get("teacher", True) is False:
        return ["off"]
    return list(method.get("variants", ["off"] if "rule" in method else ["off", "on"]))


def method_teacher_names(config: Mapping[str, Any], method: Mapping[str, Any]) -> list[str]:
    """Every configured teacher unless the method names some (`teachers:`)."""
    chosen = method.get("teachers", "all")
    return list(config["teachers"]) if chosen == "all" else list(chosen)


def seed_count(method: Mapping[str, Any], teacher: str, n_seeds: int) -> int:
    """How many of the study's first seeds a method runs with at `teacher`: `seeds: N` for every
    teacher, `seeds: {teacher: N}` per teacher (a teacher not named gets all `n_seeds`)."""
    count = method.get("seeds", n_seeds)
    if isinstance(count, Mapping):
        count = count.get(teacher, n_seeds)
    return int(count)


def _check_seeds(name: str, method: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    where, n_seeds = f"methods.{name}.seeds", len(config["seeds"])
    counts = method.get("seeds", n_seeds)
    if isinstance(counts, Mapping):
        if method.get("teacher", True) is False:
            raise ConfigError(f"{where}: a method without a teacher takes one count (seeds: N)")
        valid = method_teacher_names(config, method)
        for teacher in counts:
            if teacher not in valid:
                raise ConfigError(
                    f"{where}: {teacher!r} is not one of its teachers; valid: {', '.join(valid)}"
                )
        counts = dict(counts)
    else:
        counts = {"": counts}
    for teacher, count in counts.items():
        if not 1 <= count <= n_seeds:
            at = f".{teacher}" if teacher else ""
            raise ConfigError(
                f"{where}{at}: {count} is not a count from 1 to {n_seeds}"
                f" (the study's seeds: {config['seeds']})"
            )


def method_atkd_options(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The +ATKD options of method `name`: the top-level `atkd_options`, then the method's own
    `atkd_options` (explicit `groups` there replace the top-level `lam`)."""
    own = config["methods"][name].get("atkd_options", {})
    merged = dict(config.get("atkd_options", {}))
    if "groups" in own:
        merged.pop("lam", None)
    return merged | dict(own)


def distill_fields(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The training fields of method `name`'s runs: the `distill` section, the method's `train` overrides,
    then its `budget` (a multiplier) applied to `max_steps` when set, else to `epochs`."""
    method = config["methods"][name]
    fields = dict(config["distill"]) | dict(method.get("train", {}))
    budget = method.get("budget")
    if budget is not None:
        if fields.get("max_steps") is not None:
            fields["max_steps"] = max(1, round(fields["max_steps"] * budget))
        else:
            fields["epochs"] = float(fields.get("epochs", _DEFAULT_EPOCHS)) * budget
    return fields


def distill_budget(config: Mapping[str, Any], name: str) -> tuple[float, str]:
    """Method `name`'s distillation budget: (optimizer steps, "steps") if `max_steps` is set, else
    (epochs, "epochs")."""
    fields = distill_fields(config, name)
    if fields.get("max_steps") is not None:
        return float(fields["max_steps"]), "steps"
    return float(fields.get("epochs", _DEFAULT_EPOCHS)), "epochs"


def budget_sweep_plan(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `budget_sweep` section resolved for the report: {teacher, unit, members: {method: budget}},
    members by budget; None without one."""
    sweep = config.get("budget_sweep")
    if not sweep:
        return None
    budgets = {m: distill_budget(config, m) for m in sweep["members"]}
    members = dict(sorted(((m, b) for m, (b, _) in budgets.items()), key=lambda kv: kv[1]))
    return {"teacher": sweep["teacher"], "unit": next(iter(budgets.values()))[1], "members": members}


def _check_budget_sweep(config: Mapping[str, Any]) -> None:
    sweep = config["budget_sweep"]
    teachers = list(config["teachers"])
    if sweep["teacher"] not in teachers:
        raise ConfigError(
            f"budget_sweep.teacher: unknown teacher {sweep['teacher']!r}; valid: {', '.join(teachers)}"
        )
    seen: dict[tuple[float, str], str] = {}
    for name in sweep["members"]:
        where = f"budget_sweep.members: method {name!r}"
        if name not in config["methods"]:
            valid = ", ".join(config["methods"])
            raise ConfigError(f"budget_sweep.members: unknown method {name!r}; valid: {valid}")
        method = config["methods"][name]
        if set(method_variants(method)) != {"off", "on"}:
            raise ConfigError(f"{where} needs runs with and without ATKD (variants: [off, on])")
        chosen = method.get("teachers", "all")
        if chosen != "all" and sweep["teacher"] not in chosen:
            raise ConfigError(
                f"{where} is not run with teacher {sweep['teacher']!r} (its teachers: {chosen})"
            )
        budget = distill_budget(config, name)
        if budget in seen:
            raise ConfigError(f"{where} has the same budget as {seen[budget]!r} ({budget[0]:g} {budget[1]})")
        seen[budget] = name
    units = {unit for _, unit in seen}
    if len(units) > 1:
        raise ConfigError("budget_sweep.members: budgets mix epochs and max_steps; give them all one kind")


def _check_comparisons(config: Mapping[str, Any]) -> None:
    """`comparisons:` name configured methods, a teacher both of them run with, variants both have."""
    methods = config["methods"]
    for i, c in enumerate(config.get("comparisons", [])):
        where = f"comparisons[{i}]"
        for key in ("a", "b"):
            if c[key] not in methods:
                raise ConfigError(f"{where}.{key}: unknown method {c[key]!r}; valid: {', '.join(methods)}")
        teacher = c.get("teacher", "")
        wanted = {"both": ["off", "on"]}.get(c.get("variant", "off"), [c.get("variant", "off")])
        for key in ("a", "b"):
            m = methods[c[key]]
            teachers = method_teacher_names(config, m)
            if m.get("teacher", True) is not False and teacher not in teachers:
                raise ConfigError(
                    f"{where}.teacher: {c[key]} runs with teachers {', '.join(teachers)}, not {teacher!r}"
                )
            variants = method_variants(m)
            if missing := [v for v in wanted if v not in variants]:
                raise ConfigError(
                    f"{where}.variant: {c[key]} has no {missing[0]!r} variant (variants: {variants})"
                )


def _check_zoo(config: Mapping[str, Any]) -> None:
    """`zoo:` is read only with the world it was built on, and only as its manifest lists it."""
    if "world" not in config:
        raise ConfigError("zoo: a zoo is built on the synthetic world (`world:`); this config has `data:`")
    try:
        verify_zoo(config["zoo"])
        check_zoo_world(config["zoo"], config["world"], WORLD_VERSION)
    except ZooError as err:
        raise ConfigError(f"zoo: {err}") from None


def _check_teacher_cache(cache: Mapping[str, Any]) -> None:
    """A tail estimator reads a sparse cache, and the lowrank and sampled ones need their width."""
    tail = cache.get("tail", "bucket")
    if tail != "bucket" and not cache.get("topk"):
        raise ConfigError(f"teacher_cache.tail: {tail!r} reads a sparse cache; set teacher_cache.topk")
    if tail in ("lowrank", "sampled") and "tail_width" not in cache:
        what = "the rank r" if tail == "lowrank" else "the tokens M drawn per position"
        raise ConfigError(f"teacher_cache.tail_width: tail {tail!r} needs {what} (an integer >= 1)")


def check_study(config: Mapping[str, Any]) -> None:
    """Raise ValueError naming the config key and the valid choices for anything the package rejects."""
    _check_model("student", config["student"])
    for name, entry in config["teachers"].items():
        _check_model(f"teachers.{name}", entry)
        if entry.get("finetune", True) is False and ("model" not in entry or "pretrain" in entry):
            raise ConfigError(
                f"teachers.{name}.finetune: false uses a checkpoint as it is;"
                " it needs `model` and no `pretrain`"
            )
        if "pretrained" in entry or "layers" in entry:
            key = "pretrained" if "pretrained" in entry else "layers"
            raise ConfigError(
                f"teachers.{name}.{key}: student only (a teacher used as it is: finetune: false)"
            )
        if entry.get("references", "world") == "clean" and (
            entry.get("finetune", True) is False or not config.get("world", {}).get("reference_noise")
        ):
            raise ConfigError(
                f"teachers.{name}.references: clean tunes the teacher on the true answers, which exist only"
                " when world.reference_noise > 0, and a finetune: false teacher is not tuned here"
            )
        if "pretrain" in entry and ("arch" not in entry or "teacher_pretrain" not in config):
            raise ConfigError(
                f"teachers.{name}.pretrain: only a teacher built from `arch` is pre-trained, and only when"
                " the config has a `teacher_pretrain:` section"
            )
    try:
        load_plugins(config.get("plugins", []))
    except (ImportError, OSError) as err:
        raise ConfigError(f"plugins: {err}") from None
    for i, path in enumerate(config.get("workflow_plugins", [])):
        if not Path(path).is_file():
            raise ConfigError(
                f"workflow_plugins[{i}]: no such file {path!r} (a Snakemake file, from the working directory)"
            )
    for name, method in config["methods"].items():
        _check_method(name, method, config)
        _check_seeds(name, method, config)
    try:
        parse_spec({"name": "fkl", "atkd": dict(config["atkd_options"])})
    except ValueError as err:
        raise ConfigError(f"atkd_options: {err}") from None
    _check_comparisons(config)
    _check_teacher_cache(config.get("teacher_cache", {}))
    if "zoo" in config:
        _check_zoo(config)
    if "zoo_build" in config:  # a zoo holds models trained here, from the ladder
        built = {"student": config["student"], **{f"teachers.{t}": s for t, s in config["teachers"].items()}}
        for where, spec in built.items():
            if "arch" not in spec or "world" not in config:
                raise ConfigError(
                    f"{where}: a zoo is built from `arch` models on the synthetic world (`world:`)"
                )
    student = config["student"]
    if student.get("pretrained") and "model" not in student:
        raise ConfigError("student.pretrained: a pre-trained base needs `model` (a Hub id or checkpoint)")
    if "layers" in student and not student.get("pretrained"):
        raise ConfigError(
            "student.layers: a layer subset is cut from a checkpoint; set model and pretrained: true"
        )
    if "finetune" in student:
        raise ConfigError("student.finetune: teachers only (the student base is trained or used as it is)")
    for section in ("student", "teacher_train", "teacher_pretrain", "distill"):
        if "references" in config.get(section, {}):
            raise ConfigError(
                f"{section}.references: teachers only (a teacher's entry under `teachers:`; students"
                " always distil on the world's train.jsonl)"
            )
    if "data" in config and config["evaluation"]["suites"]:
        raise ConfigError(
            "evaluation.suites: the synthetic world's suites need `world:`; with `data:` use instruct_sets"
            " and benchmarks"
        )
    e = config["evaluation"]
    if not (e["suites"] or e.get("instruct_sets") or e.get("benchmarks")):
        raise ConfigError("evaluation: nothing to evaluate (no suites, instruct_sets or benchmarks)")
    if e.get("judge") and not e.get("instruct_sets"):
        raise ConfigError("evaluation.judge: the LLM judge scores instruct_sets, and none is configured")
    for suite in config["evaluation"]["suites"]:
        if suite not in SUITES:
            raise ConfigError(f"evaluation.suites: unknown suite {suite!r}; valid: {', '.join(SUITES)}")
    evaluated = config["evaluation"]["suites"]
    for suite, shots in config["evaluation"].get("num_fewshot", {}).items():
        if suite not in evaluated or suite in GENERATION_SUITES:
            valid = [s for s in evaluated if s not in GENERATION_SUITES]
            raise ConfigError(
                f"evaluation.num_fewshot: {suite!r} is not an evaluated understanding suite;"
                f" valid: {', '.join(valid)}"
            )
        if not isinstance(shots, int) or shots < 0:
            raise ConfigError(f"evaluation.num_fewshot.{suite}: expected a count >= 0, got {shots!r}")
    try:
        check_instruct_sets(config["evaluation"].get("instruct_sets"))
    except (ValueError, OSError) as err:
        raise ConfigError(f"evaluation.instruct_sets: {err}") from None
    for name, spec in config.get("analyses", {}).items():
        variant = spec.get("variant", "off")
        for method in spec["members"]:
            if method not in config["methods"]:
                valid = ", ".join(config["methods"])
                raise ConfigError(f"analyses.{name}.members: unknown method {method!r}; valid: {valid}")
            if variant not in method_variants(config["methods"][method]):
                raise ConfigError(f"analyses.{name}: method {method!r} has no variant={variant!r} run")
    if config.get("budget_sweep"):
        _check_budget_sweep(config)
    probes = config.get("probes", {})
    for i, path in enumerate(probes.get("data", [])):
        try:
            for _ in read_jsonl(path, {"instruction": str, "output": str}, optional={"input": str}):
                pass
        except (ValueError, OSError) as err:
            raise ConfigError(f"probes.data[{i}]: {err}") from None
    for label, path in probes.get("reference", {}).items():
        if not Path(path).is_file():
            raise ConfigError(f"probes.reference.{label}: no such file {path!r} (a run's tables/probes.csv)")
    landscape = config.get("landscape", {})
    for key, valid in (("methods", config["methods"]), ("teachers", config["teachers"])):
        for name in landscape.get(key, []):
            if name not in valid:
                raise ConfigError(f"landscape.{key}: unknown name {name!r}; valid: {', '.join(valid)}")
    if config["evaluation"].get("benchmarks"):
        try:
            check_benchmarks(config["evaluation"]["benchmarks"])
        except ValueError as err:
            raise ConfigError(f"evaluation.benchmarks: {err}") from None
