# Teachers (instruction fine-tuned on the world) and the student's base model (plain-text pre-training,
# not instruction-tuned, as in the study). A model entry is `arch:` (a ladder name, random init with our
# tokenizer) or `model:` (a checkpoint directory or Hub id).


rule teacher_base:
    """A teacher's pre-trained base: the world's plain text (`teacher_pretrain:`), before instruction
    tuning, as the study's teachers are pre-trained LMs. Only for teachers built from `arch`."""
    priority: 10
    conda:
        ENV
    input:
        world=rules.world.output.manifest,
        tok=rules.tokenizer.output,
    output:
        f"{TEACHER_BASE_DIR}/{{teacher}}/train_summary.json",
    params:
        train=train_command("teacher"),
        args=teacher_base_args,
    log:
        f"{LOGS}/teacher_base/{{teacher}}.log",
    benchmark:
        f"{BENCH}/teacher_base/{{teacher}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("teacher_base"),
    shell:
        "{params.train} {params.args} > {log} 2>&1"


rule teacher:
    # the teachers (the largest above all) are the critical path: every distillation waits for one
    priority: 10
    conda:
        ENV
    input:
        world=rules.world.output.manifest,
        tok=rules.tokenizer.output,
        base=teacher_base_inputs,
    output:
        f"{TEACHER_DIR}/{{teacher}}/train_summary.json",
    params:
        cmd=teacher_command,
    log:
        f"{LOGS}/teacher/{{teacher}}.log",
    benchmark:
        f"{BENCH}/teacher/{{teacher}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("teacher"),
    shell:
        "{params.cmd} > {log} 2>&1"


rule student_base:
    conda:
        ENV
    input:
        world=rules.world.output.manifest,
        tok=rules.tokenizer.output,
    output:
        f"{STUDENT_BASE}/train_summary.json",
    params:
        cmd=student_base_command(),
    log:
        f"{LOGS}/student_base.log",
    benchmark:
        f"{BENCH}/student_base.tsv",
    threads: config["threads"]
    resources:
        **resources_for("student_base"),
    shell:
        "{params.cmd} > {log} 2>&1"


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
    benchmark:
        f"{BENCH}/model_table.tsv",
    threads: 1
    resources:
        **resources_for("model_table"),
    shell:
        "atkd model-table --out {output} {params.models} > {log} 2>&1"


rule teacher_cache:
    """A teacher's logits at every response position of a training file (the ground truth, `gt`, or the
    teacher's own generated answers, `gen`), computed once and shared by every student that reads them."""
    priority: 5
    conda:
        ENV
    input:
        teacher=lambda w: teacher_done(w.key),
        data=lambda w: f"{GENERATED_DIR}/{w.key}/train.jsonl" if w.data == "gen" else f"{WORLD}/manifest.json",
    output:
        f"{CACHE_DIR}/{{key}}/{{data}}/meta.json",
    params:
        teacher=lambda w: teacher_model(w.key),
        data=lambda w: f"{GENERATED_DIR}/{w.key}/train.jsonl" if w.data == "gen" else f"{WORLD}/train.jsonl",
        out=parent("output"),
        max_length=config["distill"].get("max_length", 512),
        options=cache_flags,
    log:
        f"{LOGS}/teacher_cache/{{key}}/{{data}}.log",
    benchmark:
        f"{BENCH}/teacher_cache/{{key}}/{{data}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("teacher_cache"),
    shell:
        "atkd teacher-cache --teacher {params.teacher} --train-data {params.data}"
        " --out {params.out} --max-length {params.max_length} {params.options}"
        " --threads {threads} > {log} 2>&1"


rule teacher_generate:
    """A teacher's answers to every training prompt (SeqKD and other teacher-sampled methods), once."""
    priority: 5
    conda:
        ENV
    input:
        teacher=lambda w: teacher_done(w.key),
        world=rules.world.output.manifest,
    output:
        f"{GENERATED_DIR}/{{key}}/train.jsonl",
    params:
        teacher=lambda w: teacher_model(w.key),
        world=parent("input", 1),
        g=GENERATION,
        seed=DATA_SEED,
    log:
        f"{LOGS}/teacher_generate/{{key}}.log",
    benchmark:
        f"{BENCH}/teacher_generate/{{key}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("teacher_generate"),
    shell:
        "atkd generate --model {params.teacher} --data {params.world}/train.jsonl --out {output}"
        " --max-new-tokens {params.g[max_new_tokens]} --temperature {params.g[temperature]}"
        " --batch-size {params.g[batch_size]} --seed {params.seed} --threads {threads} --no-progress"
        " > {log} 2>&1"


rule assistant:
    """Teacher assistant: the trained middle-sized teacher `assistant`, distilled further from the large
    teacher `teacher` with Supervised KD (forward KL, ground truth); students then learn from it."""
    priority: 5
    conda:
        ENV
    input:
        assistant=f"{TEACHER_DIR}/{{assistant}}/train_summary.json",
        teacher=lambda w: (
            f"{CACHE_DIR}/{w.teacher}/gt/meta.json"
            if cache_enabled()
            else f"{TEACHER_DIR}/{w.teacher}/train_summary.json"
        ),
    output:
        f"{ASSISTANT_DIR}/{{teacher}}/{{assistant}}/train_summary.json",
    params:
        train=train_command("assistant"),
        args=lambda w: train_args(
            config["distill"],
            model=f"{TEACHER_DIR}/{w.assistant}/final",
            output_dir=f"{ASSISTANT_DIR}/{w.teacher}/{w.assistant}",
            train_data=f"{WORLD}/train.jsonl",
            valid_data=f"{WORLD}/valid.jsonl",
            loss="fkl",
            **(
                dict(teacher_cache=f"{CACHE_DIR}/{w.teacher}/gt")
                if cache_enabled()
                else dict(teacher=f"{TEACHER_DIR}/{w.teacher}/final")
            ),
            seed=DATA_SEED,
            threads=config["threads"],
            progress=False,
        ),
    log:
        f"{LOGS}/assistant/{{teacher}}/{{assistant}}.log",
    benchmark:
        f"{BENCH}/assistant/{{teacher}}/{{assistant}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("assistant"),
    shell:
        "{params.train} {params.args} > {log} 2>&1"
