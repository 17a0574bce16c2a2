# Aggregation into the tidy table, then tables and figures from tidy files only.


rule collect:
    conda:
        ENV
    input:
        [f"{run_dir(*r)}/eval/metrics.csv" for r in runs()]
        + [f"{TEACHER_DIR}/{t}/eval/metrics.csv" for t in config["teachers"]],
    output:
        f"{RESULTS}/metrics.csv",
    log:
        f"{LOGS}/collect.log",
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
    output:
        f"{RESULTS}/tables/main.csv",
        f"{RESULTS}/tables/main.md",
        f"{FIGURES}/teacher_sweep.png",
        f"{FIGURES}/teacher_sweep.pdf",
    params:
        methods=" ".join(config["methods"]),
        tables=parent("output", 0),
        figures=parent("output", 2),
        primary=" ".join(f"{k}={v}" for k, v in config.get("report", {}).get("primary", {}).items()),
    log:
        f"{LOGS}/report.log",
    threads: 1
    resources:
        **resources_for("report"),
    shell:
        "atkd report --metrics {input.metrics} --models {input.models} --tables {params.tables}"
        " --figures {params.figures} --methods {params.methods} --primary {params.primary} > {log} 2>&1"
