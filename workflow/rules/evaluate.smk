# Every distilled student, and every teacher, on the configured suites through lm-evaluation-harness
# in-process.


rule evaluate:
    conda:
        ENV
    input:
        run=f"{RUNS}/{{method}}/{{teacher}}/{{variant}}/s{{seed}}/train_summary.json",
        world=rules.world.output.manifest,
        sets=INSTRUCT_SET_FILES,
    output:
        metrics=f"{RUNS}/{{method}}/{{teacher}}/{{variant}}/s{{seed}}/eval/metrics.csv",
        doc_scores=f"{RUNS}/{{method}}/{{teacher}}/{{variant}}/s{{seed}}/eval/doc_scores.csv",
    params:
        run=lambda w: run_dir(w.method, w.teacher, w.variant, w.seed),
        meta=eval_meta,
        world=parent("input", 1),
        args=eval_args(),
        nice=BACKGROUND,
    log:
        f"{LOGS}/evaluate/{{method}}/{{teacher}}/{{variant}}/s{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{method}}/{{teacher}}/{{variant}}/s{{seed}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("evaluate"),
    shell:
        "{params.nice} atkd evaluate --model {params.run}/final --world {params.world} {params.args}"
        " --threads {threads} --out {params.run}/eval --meta {params.meta} > {log} 2>&1"


rule evaluate_teacher:
    """A teacher's own scores: the reference line of the teacher sweep (does quality rise with size?)."""
    conda:
        ENV
    input:
        teacher=f"{TEACHER_DIR}/{{teacher}}/train_summary.json",
        world=rules.world.output.manifest,
        sets=INSTRUCT_SET_FILES,
    output:
        metrics=f"{TEACHER_DIR}/{{teacher}}/eval/metrics.csv",
        doc_scores=f"{TEACHER_DIR}/{{teacher}}/eval/doc_scores.csv",
    params:
        teacher=parent("input", 0),
        meta=teacher_meta,
        world=parent("input", 1),
        args=eval_args(),
    log:
        f"{LOGS}/evaluate/teacher/{{teacher}}.log",
    benchmark:
        f"{BENCH}/evaluate/teacher/{{teacher}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("evaluate"),
    shell:
        "atkd evaluate --model {params.teacher}/final --world {params.world} {params.args}"
        " --threads {threads} --out {params.teacher}/eval --meta {params.meta} > {log} 2>&1"


rule evaluate_student_base:
    """The student base's own scores (`evaluation.student_base: true`): where every student starts."""
    conda:
        ENV
    input:
        base=rules.student_base.output,
        world=rules.world.output.manifest,
        sets=INSTRUCT_SET_FILES,
    output:
        metrics=f"{STUDENT_BASE}/eval/metrics.csv",
        doc_scores=f"{STUDENT_BASE}/eval/doc_scores.csv",
    params:
        base=parent("input", 0),
        meta=student_base_meta(),
        world=parent("input", 1),
        args=eval_args(),
    log:
        f"{LOGS}/evaluate/student_base.log",
    benchmark:
        f"{BENCH}/evaluate/student_base.tsv",
    threads: config["threads"]
    resources:
        **resources_for("evaluate"),
    shell:
        "atkd evaluate --model {params.base}/final --world {params.world} {params.args}"
        " --threads {threads} --out {params.base}/eval --meta {params.meta} > {log} 2>&1"


rule judge:
    """The LLM judge's scores of a model's answers on the instruct sets (`evaluation.judge`; the key comes
    from the environment variable named there). Judgements are cached in one file for the whole study
    (JUDGE_CACHE), so a rerun, a resumed run or another model with the same answer never asks twice."""
    conda:
        ENV
    input:
        f"{{model_dir}}/eval/metrics.csv",
    output:
        f"{{model_dir}}/judge/metrics.csv",
    params:
        args=judge_args,
        out=parent("output"),
        evaluated=parent("input", up=2),
    log:
        f"{{model_dir}}/judge/judge.log",
    threads: 1
    resources:
        **resources_for("judge"),
    shell:
        "atkd judge --generations {params.evaluated}/eval/generations.jsonl --out {params.out}"
        " {params.args} --no-progress > {log} 2>&1"
