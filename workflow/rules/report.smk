# Aggregation into the tidy table, then tables and figures from tidy files only.


rule collect:
    conda:
        ENV
    input:
        [f"{d}/{stage}/metrics.csv" for d in evaluated_dirs() for stage in evaluation_stages()],
    output:
        f"{RESULTS}/metrics.csv",
    log:
        f"{LOGS}/collect.log",
    benchmark:
        f"{BENCH}/collect.tsv",
    threads: 1
    resources:
        **resources_for("collect"),
    shell:
        "atkd collect --out {output} {input} > {log} 2>&1"


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
    """Each suite's chance level (task, chance, definition), written by `atkd world` next to the suites,
    as a result file: the report's chance row. Only the synthetic world has one."""
    conda:
        ENV
    input:
        rules.world.output.manifest,
    output:
        f"{RESULTS}/chance.csv",
    params:
        world=parent("input", 0),
    log:
        f"{LOGS}/chance.log",
    threads: 1
    shell:
        "cp -v {params.world}/chance.csv {output} > {log} 2>&1"


rule report:
    conda:
        ENV
    input:
        metrics=rules.collect.output,
        models=rules.model_table.output,
        doc_scores=rules.collect_runs.output.doc_scores,
        runs=rules.collect_runs.output.runs,
        chance=[] if REAL_DATA else rules.chance.output,
        probes=[f"{d}/{f}.csv" for d in probe_dirs() for f in ("summary", "tokens")],
        landscapes=[f"{d}/{f}.csv" for d in landscape_dirs() for f in ("summary", "landscape")],
    output:
        f"{RESULTS}/tables/main.csv",
        f"{RESULTS}/tables/main.md",
        f"{RESULTS}/tables/main.tex",
        f"{FIGURES}/teacher_sweep.png",
        f"{FIGURES}/teacher_sweep.pdf",
        f"{RESULTS}/REPORT.md",
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
        primary=" ".join(f"{k}={v}" for k, v in config.get("report", {}).get("primary", {}).items()),
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
        " --probes {params.probes} --landscapes {params.landscapes} --analyses {params.analyses} > {log} 2>&1"
