# Teachers (instruction fine-tuned on the world) and the student's base model (plain-text pre-training,
# not instruction-tuned, as in the study). A model entry is `arch:` (a ladder name, random init with our
# tokenizer) or `model:` (a checkpoint directory or Hub id).


rule teacher:
    conda:
        ENV
    input:
        world=rules.world.output.manifest,
        tok=rules.tokenizer.output,
    output:
        f"{TEACHER_DIR}/{{teacher}}/train_summary.json",
    params:
        args=lambda w: train_args(
            config["teacher_train"],
            config["teachers"][w.teacher],
            output_dir=f"{TEACHER_DIR}/{w.teacher}",
            train_data=f"{WORLD}/train.jsonl",
            valid_data=f"{WORLD}/valid.jsonl",
            seed=config["world"]["seed"],
            threads=config["threads"],
            progress=False,
        ),
    log:
        f"{LOGS}/teacher/{{teacher}}.log",
    threads: config["threads"]
    resources:
        **resources_for("teacher"),
    shell:
        "atkd train {params.args} > {log} 2>&1"


rule student_base:
    conda:
        ENV
    input:
        world=rules.world.output.manifest,
        tok=rules.tokenizer.output,
    output:
        f"{STUDENT_BASE}/train_summary.json",
    params:
        args=train_args(
            config["student"],
            output_dir=STUDENT_BASE,
            train_data=f"{WORLD}/pretrain.txt",
            seed=config["world"]["seed"],
            threads=config["threads"],
            progress=False,
        ),
    log:
        f"{LOGS}/student_base.log",
    threads: config["threads"]
    resources:
        **resources_for("student_base"),
    shell:
        "atkd train {params.args} > {log} 2>&1"


rule model_table:
    conda:
        ENV
    input:
        teachers=expand(f"{TEACHER_DIR}/{{teacher}}/train_summary.json", teacher=config["teachers"]),
        student=rules.student_base.output,
    output:
        f"{RESULTS}/models.csv",
    params:
        models=lambda w: " ".join(
            [f"{t}=teacher={TEACHER_DIR}/{t}/final" for t in config["teachers"]]
            + [f"student=student={STUDENT_BASE}/final"]
        ),
    log:
        f"{LOGS}/model_table.log",
    threads: 1
    resources:
        **resources_for("model_table"),
    shell:
        "atkd model-table --out {output} {params.models} > {log} 2>&1"


rule teacher_cache:
    """The teacher's logits at every response position of the training data, computed once and shared
    by every student distilled from it on ground-truth sequences."""
    conda:
        ENV
    input:
        teacher=f"{TEACHER_DIR}/{{teacher}}/train_summary.json",
        world=rules.world.output.manifest,
    output:
        f"{TEACHER_DIR}/{{teacher}}/cache/meta.json",
    params:
        teacher=parent("input", 0),
        world=parent("input", 1),
        out=parent("output"),
        max_length=config["distill"].get("max_length", 512),
        dtype=config.get("teacher_cache", {}).get("dtype", "float16"),
    log:
        f"{LOGS}/teacher_cache/{{teacher}}.log",
    threads: config["threads"]
    resources:
        **resources_for("teacher_cache"),
    shell:
        "atkd teacher-cache --teacher {params.teacher}/final --train-data {params.world}/train.jsonl"
        " --out {params.out} --max-length {params.max_length} --dtype {params.dtype}"
        " --threads {threads} > {log} 2>&1"
