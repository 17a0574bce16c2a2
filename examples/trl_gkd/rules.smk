# TRL's GKD trainer as a study baseline (examples/trl_gkd/train.py): a user's Snakemake rule that leaves a
# run at the study's usual path, evaluated and reported like any other. In your config:
#
#   workflow_plugins: [examples/trl_gkd/rules.smk]
#   methods:
#     trl_gkd: {rule: trl_gkd, variants: ["off", "on"], teachers: [neox-208x6],
#               params: {beta: 0.5, lmbda: 0.5, max_new_tokens: 64, temperature: 1.0}}
#
# Needs the `trl` extra: pip install -e ".[trl]" (install torch first).

TRL_GKD_SCRIPT = os.path.join(workflow.current_basedir, "train.py")


rule trl_gkd:
    input:
        **run_inputs("trl_gkd"),
    output:
        **run_outputs("trl_gkd"),
    params:
        **run_params("trl_gkd"),
        script=TRL_GKD_SCRIPT,
    log:
        f"{LOGS}/trl_gkd/{{teacher}}-{{variant}}-s{{seed}}.log",
    benchmark:
        f"{BENCH}/trl_gkd/{{teacher}}/{{variant}}/s{{seed}}.tsv",
    threads: config.get("threads") or 1
    resources:
        **resources_for("distill"),
    shell:
        "python {params.script} --student {params.student_base} --teacher {params.teacher}"
        " --data {params.train_data} --valid {params.valid_data} --atkd {wildcards.variant}"
        " --seed {wildcards.seed} --out {params.run_dir} --settings {params.settings:q} > {log} 2>&1"
