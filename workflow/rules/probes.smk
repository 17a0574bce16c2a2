# Token probes of the teacher ladder: per-token UnC and the TKD / UnC x DKD split of KD against the
# student's base model, on the world's validation records (or the instruction files of `probes.data`).


rule probe:
    conda:
        ENV
    input:
        teacher=f"{TEACHER_DIR}/{{teacher}}/train_summary.json",
        student=rules.student_base.output,
        world=rules.world.output.manifest,
        data=PROBES.get("data", []),
    output:
        summary=f"{RESULTS}/probes/{{teacher}}/summary.csv",
        tokens=f"{RESULTS}/probes/{{teacher}}/tokens.csv",
    params:
        teacher=parent("input", 0),
        student=parent("input", 1),
        data=probe_data,
        out=parent("output"),
        limit=PROBES["limit"],
        max_length=config["distill"].get("max_length", 512),
    log:
        f"{LOGS}/probe/{{teacher}}.log",
    benchmark:
        f"{BENCH}/probe/{{teacher}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("probe"),
    shell:
        "atkd probe --teacher {params.teacher}/final --student {params.student}/final"
        " --data {params.data} --name {wildcards.teacher} --out {params.out}"
        " --limit {params.limit} --max-length {params.max_length} --threads {threads} > {log} 2>&1"


rule sparse_accuracy:
    """How well the teacher's top-K view (the sparse cache, `teacher_cache: {topk: K}`) stands in for its
    full distribution on the probed records: loss and gradient errors per divergence, +-ATKD."""
    conda:
        ENV
    input:
        teacher=f"{TEACHER_DIR}/{{teacher}}/train_summary.json",
        student=rules.student_base.output,
        world=rules.world.output.manifest,
        data=PROBES.get("data", []),
    output:
        f"{RESULTS}/probes/{{teacher}}/sparse.csv",
    params:
        teacher=parent("input", 0),
        student=parent("input", 1),
        data=probe_data,
        k=" ".join(str(k) for k in sparse_ks()),
        limit=PROBES.get("sparse_limit", PROBES["limit"]),
        max_length=config["distill"].get("max_length", 512),
    log:
        f"{LOGS}/sparse_accuracy/{{teacher}}.log",
    benchmark:
        f"{BENCH}/sparse_accuracy/{{teacher}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("probe"),
    shell:
        "atkd sparse-accuracy --teacher {params.teacher}/final --student {params.student}/final"
        " --data {params.data} --k {params.k} --name {wildcards.teacher} --out {output}"
        " --limit {params.limit} --max-length {params.max_length} --threads {threads} > {log} 2>&1"


rule landscape:
    """Loss landscape of one distilled student along filter-normalised random directions (F6)."""
    conda:
        ENV
    input:
        run=f"{RUNS}/{{method}}/{{teacher}}/{{variant}}/s{{seed}}/train_summary.json",
        world=rules.world.output.manifest,
    output:
        f"{RESULTS}/landscape/{{method}}/{{teacher}}/{{variant}}/s{{seed}}/summary.csv",
        f"{RESULTS}/landscape/{{method}}/{{teacher}}/{{variant}}/s{{seed}}/landscape.csv",
    params:
        run=lambda w: run_dir(w.method, w.teacher, w.variant, w.seed),
        world=parent("input", 1),
        out=parent("output"),
        L=LANDSCAPE,
        meta=lambda w: f"method={w.method} teacher={w.teacher} atkd={w.variant} seed={w.seed}",
        nice=BACKGROUND,
    log:
        f"{LOGS}/landscape/{{method}}/{{teacher}}/{{variant}}/s{{seed}}.log",
    benchmark:
        f"{BENCH}/landscape/{{method}}/{{teacher}}/{{variant}}/s{{seed}}.tsv",
    threads: config["threads"]
    resources:
        **resources_for("landscape"),
    shell:
        "{params.nice} atkd landscape --model {params.run}/final --data {params.world}/valid.jsonl --out {params.out}"
        " --steps {params.L[steps]} --span {params.L[span]} --limit {params.L[limit]} --seed {params.L[seed]}"
        " --threads {threads} --meta {params.meta} > {log} 2>&1"
