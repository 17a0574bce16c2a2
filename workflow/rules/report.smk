# Aggregation into the tidy table, then tables and figures from tidy files only.


rule collect:
    """The tidy tables: every evaluation's rows (metrics.csv) and every training run's logged losses
    (curves.csv, from the distillation runs' and the teachers' metrics.jsonl)."""
    conda:
        ENV
    input:
        metrics=[f"{d}/{stage}/metrics.csv" for d in evaluated_dirs() for stage in evaluation_stages()],
        runs=[f"{run_dir(*r)}/train_summary.json" for r in runs()],
        teachers=[f"{TEACHER_DIR}/{t}/train_summary.json" for t in config["teachers"]],
    output:
        metrics=f"{RESULTS}/metrics.csv",
        curves=f"{RESULTS}/curves.csv",
    params:
        runs=" ".join(run_dir(*r) for r in runs() if not is_rule_method(r[0])),
        rule_runs=rule_runs_flag(),
        teachers=" ".join(f"{TEACHER_DIR}/{t}" for t in tuned_teachers()),
    log:
        f"{LOGS}/collect.log",
    benchmark:
        f"{BENCH}/collect.tsv",
    threads: 1
    resources:
        **resources_for("collect"),
    shell:
        "(atkd collect --out {output.metrics} {input.metrics}"
        " && atkd curves --out {output.curves} {params.runs} --teachers {params.teachers}"
        " {params.rule_runs}) > {log} 2>&1"


rule collect_runs:
    """The report's other tidy tables: every evaluation's per-document scores (doc_scores.csv, for the
    bootstrap over seeds and documents) and each distilled student's objective key from its
    train_summary.json (runs.csv, for "same objective" marks); run columns come from metrics.csv."""
    conda:
        ENV
    input:
        metrics=f"{RESULTS}/metrics.csv",
        doc_scores=doc_score_files(),
        summaries=list(run_summaries().values()),
    output:
        doc_scores=f"{RESULTS}/doc_scores.csv",
        runs=f"{RESULTS}/runs.csv",
    params:
        summaries=" ".join(shlex.quote(f"{k}={v}") for k, v in run_summaries().items()),
    log:
        f"{LOGS}/collect_runs.log",
    benchmark:
        f"{BENCH}/collect_runs.tsv",
    threads: 1
    resources:
        **resources_for("collect"),
    shell:
        "atkd collect --doc-scores {input.doc_scores} --doc-scores-out {output.doc_scores}"
        " --metrics {input.metrics} --summaries {params.summaries} --runs-out {output.runs} > {log} 2>&1"


rule chance:
    """Each suite's chance level (task, chance, definition) on the documents the evaluation scores (the
    first `evaluation.limit`): the report's chance row. Only the synthetic world has one."""
    conda:
        ENV
    input:
        rules.world.output.manifest,
    output:
        f"{RESULTS}/chance.csv",
    params:
        world=parent("input", 0),
        limit=f"--limit {config['evaluation']['limit']}" if config["evaluation"].get("limit") else "",
    log:
        f"{LOGS}/chance.log",
    threads: 1
    shell:
        "atkd chance --world {params.world} {params.limit} --out {output} > {log} 2>&1"


rule report:
    conda:
        ENV
    input:
        metrics=rules.collect.output.metrics,
        curves=rules.collect.output.curves,
        models=rules.model_table.output,
        doc_scores=rules.collect_runs.output.doc_scores,
        runs=rules.collect_runs.output.runs,
        chance=[] if REAL_DATA else rules.chance.output,
        probes=[f"{d}/{f}.csv" for d in probe_dirs() for f in ("summary", "tokens")],
        reference_probes=list(PROBES.get("reference", {}).values()),
        sparse=sparse_files(),
        landscapes=[f"{d}/{f}.csv" for d in landscape_dirs() for f in ("summary", "landscape")],
    output:
        f"{RESULTS}/tables/main.csv",
        f"{RESULTS}/tables/main.md",
        f"{RESULTS}/tables/main.tex",
        f"{FIGURES}/teacher_sweep.png",
        f"{FIGURES}/teacher_sweep.pdf",
        f"{RESULTS}/REPORT.md",
        f"{FIGURES}/training_curves.png",
        f"{FIGURES}/training_curves.pdf",
        *([f"{FIGURES}/budget_sweep.{x}" for x in ("png", "pdf")] if BUDGET_SWEEP else []),
        *(
            [f"{RESULTS}/tables/probes.{x}" for x in ("csv", "md", "tex")]
            + [f"{FIGURES}/unc_density.{x}" for x in ("png", "pdf")]
            if probe_dirs()
            else []
        ),
        *(
            [f"{FIGURES}/{f}.{x}" for f in ("landscape", "landscape_2d") for x in ("png", "pdf")]
            if landscape_dirs()
            else []
        ),
        *(
            [f"{RESULTS}/tables/analyses.{x}" for x in ("csv", "md", "tex")]
            + [f"{FIGURES}/analyses.{x}" for x in ("png", "pdf")]
            if config.get("analyses")
            else []
        ),
    params:
        methods=" ".join(config["methods"]),
        chance="" if REAL_DATA else f"--chance {RESULTS}/chance.csv",
        tables=parent("output", 0),
        figures=parent("output", 3),
        probes=" ".join(probe_dirs()),
        landscapes=" ".join(landscape_dirs()),
        analyses=shlex.quote(json.dumps(config.get("analyses", {}))),
        budget_sweep=shlex.quote(json.dumps(BUDGET_SWEEP or {})),
        primary=" ".join(f"{k}={v}" for k, v in config.get("report", {}).get("primary", {}).items()),
        reference=" ".join(shlex.quote(f"{k}={v}") for k, v in PROBES.get("reference", {}).items()),
        comparisons=comparisons_flag(),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv",
    threads: 1
    resources:
        **resources_for("report"),
    shell:
        "atkd report --metrics {input.metrics} --models {input.models} --tables {params.tables}"
        " --figures {params.figures} --methods {params.methods} --primary {params.primary}"
        " --doc-scores {input.doc_scores} --runs {input.runs} {params.chance}"
        " --probes {params.probes} --landscapes {params.landscapes} --analyses {params.analyses}"
        " --curves {input.curves} --budget-sweep {params.budget_sweep}"
        " --reference-probes {params.reference} --sparse {input.sparse} {params.comparisons} > {log} 2>&1"
