# Every distilled student on the configured suites, through lm-evaluation-harness in-process.


rule evaluate:
    conda:
        ENV
    input:
        run=f"{RUNS}/{{method}}/{{teacher}}/{{atkd}}/s{{seed}}/train_summary.json",
        world=rules.world.output.manifest,
    output:
        metrics=f"{RUNS}/{{method}}/{{teacher}}/{{atkd}}/s{{seed}}/eval/metrics.csv",
    params:
        run=lambda w: run_dir(w.method, w.teacher, w.atkd, w.seed),
        meta=eval_meta,
        world=parent("input", 1),
        e=config["evaluation"],
        suites=" ".join(config["evaluation"]["suites"]),
        limit=lambda w: f"--limit {config['evaluation']['limit']}" if config["evaluation"].get("limit") else "",
    log:
        f"{LOGS}/evaluate/{{method}}/{{teacher}}/{{atkd}}/s{{seed}}.log",
    threads: config["threads"]
    resources:
        **resources_for("evaluate"),
    shell:
        "atkd evaluate --model {params.run}/final --world {params.world} --suites {params.suites} {params.limit}"
        " --max-new-tokens {params.e[max_new_tokens]} --batch-size {params.e[batch_size]}"
        " --threads {threads} --out {params.run}/eval --meta {params.meta} > {log} 2>&1"
