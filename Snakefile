# The ATKD study as a DAG: world -> tokenizer -> teachers / student base -> distilled students ->
# evaluation -> tidy tables -> report. Rules only move files and pass configuration to the `atkd` CLI;
# every piece of science lives in the `atkd` package.
#
# Run from the repository root (Snakemake finds this file there, and loads the defaults of
# profiles/default/config.yaml); the rules, schemas and conda environment are under workflow/:
#   snakemake --cores 8 all                                   # the embedded default (config/default.yaml)
#   snakemake all --cores 2 --configfile config/smoke.yaml    # minutes; what the tests run

import os

from snakemake.utils import min_version, validate

min_version("8.20")


# The embedded default unless the user names a config: `--configfile` files would otherwise be
# merged key by key into the default (a smaller teacher list would keep the default's teachers).
if not config:

    configfile: "config/default.yaml"


from atkd.config import check_schema, check_study

# Structure and types first, as one line naming the key (snakemake's `validate` would print the whole
# schema); `validate` then only fills the schema's defaults.
check_schema(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
validate(config, "workflow/schemas/config.schema.yaml")

from atkd.eval.instruct_sets import resolve_instruct_sets
from atkd.plugins import load_plugins

# Instruction sets may be given as a glob or a list (`instruct_sets: ../data/*.jsonl`): every process
# resolves them the same way to {name: path relative to the working directory} (relative, so moving the
# project with its data does not change the jobs' parameters and re-run them).
if config["evaluation"].get("instruct_sets"):
    try:
        config["evaluation"]["instruct_sets"] = {
            name: os.path.relpath(path)
            for name, path in resolve_instruct_sets(config["evaluation"]["instruct_sets"]).items()
        }
    except ValueError as err:
        raise ValueError(f"evaluation.instruct_sets: {err}") from None

# Once, in the invocation that plans the DAG (not again in every cluster job that runs one rule).
if workflow.is_main_process:
    check_study(config)
else:  # a cluster job re-plans its rules, and a user's loss names need their plugin registered
    load_plugins(config.get("plugins", []))

# Aggregation and the LLM judge's HTTP calls run where Snakemake runs, not as cluster jobs.
localrules:
    collect,
    collect_runs,
    chance,
    model_table,
    report,
    judge,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/zoo.smk"


# Users' rules (`workflow_plugins:`, paths from the working directory): each `rule:` method's runs come
# from one of them (docs/workflow.md, "Baselines as rules"); evaluation and the report treat them like
# any other run.
for _plugin in config.get("workflow_plugins", []):

    include: os.path.abspath(_plugin)


check_rule_methods(workflow, config.get("workflow_plugins", []))


rule all:
    input:
        rules.report.output,
