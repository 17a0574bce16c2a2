# Distilled students: one run per (method, teacher, variant, seed), all from the same student base.


rule distill:
    wildcard_constraints:
        method=STUDY.trained_method_pattern(),  # not the methods a user's rule produces (`rule:`)
    conda:
        ENV
    input:
        distill_inputs,
    output:
        f"{RUNS}/{{method}}/{{teacher}}/{{variant}}/s{{seed}}/train_summary.json",
    params:
        train=train_command("distill"),
        args=distill_args,
        nice=BACKGROUND,
    log:
        f"{LOGS}/distill/{{method}}/{{teacher}}/{{variant}}/s{{seed}}.log",
    benchmark:
        f"{BENCH}/distill/{{method}}/{{teacher}}/{{variant}}/s{{seed}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("distill"),
    shell:
        "{params.nice} {params.train} {params.args} > {log} 2>&1"
