# Token probes of the teacher ladder: per-token UnC and the TKD / UnC x DKD split of KD against the
# student's base model, on the world's validation records.


rule probe:
    conda:
        ENV
    input:
        teacher=f"{TEACHER_DIR}/{{teacher}}/train_summary.json",
        student=rules.student_base.output,
        world=rules.world.output.manifest,
    output:
        summary=f"{RESULTS}/probes/{{teacher}}/summary.csv",
        tokens=f"{RESULTS}/probes/{{teacher}}/tokens.csv",
    params:
        teacher=parent("input", 0),
        student=parent("input", 1),
        world=parent("input", 2),
        out=parent("output"),
        limit=PROBES["limit"],
        max_length=config["distill"].get("max_length", 512),
    log:
        f"{LOGS}/probe/{{teacher}}.log",
    threads: config["threads"]
    resources:
        **resources_for("probe"),
    shell:
        "atkd probe --teacher {params.teacher}/final --student {params.student}/final"
        " --data {params.world}/valid.jsonl --name {wildcards.teacher} --out {params.out}"
        " --limit {params.limit} --max-length {params.max_length} --threads {threads} > {log} 2>&1"
