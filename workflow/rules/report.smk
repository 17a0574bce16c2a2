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


rule report:
    conda:
        ENV
    input:
        metrics=rules.collect.output,
        models=rules.model_table.output,
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
        " --probes {params.probes} --landscapes {params.landscapes} --analyses {params.analyses} > {log} 2>&1"
