# The zoo (config/zoo.yaml, `zoo_build:`): the student base and the teachers of a build, exported once as
# 16-bit checkpoints with a manifest, for other configs to read (`zoo:`; atkd/zoo.py).

if "zoo_build" in config:

    rule zoo:
        conda:
            ENV
        input:
            tok=rules.tokenizer.output,
            student=rules.student_base.output,
            teachers=expand(f"{TEACHER_DIR}/{{teacher}}/train_summary.json", teacher=tuned_teachers()),
        output:
            f"{config['zoo_build']['out']}/MANIFEST.json",
        params:
            build=RESULTS,
            out=parent("output"),
            config=json.dumps(config, sort_keys=True),
        log:
            f"{LOGS}/zoo.log",
        benchmark:
            f"{BENCH}/zoo.tsv",
        threads: 1
        resources:
            **resources_for("zoo"),
        shell:
            "atkd zoo-export --build {params.build} --out {params.out} --config-json {params.config:q} > {log} 2>&1"
