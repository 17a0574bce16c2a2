# The synthetic instruction world and the tokenizer trained on its training text.


rule world:
    conda:
        ENV
    output:
        manifest=f"{WORLD}/manifest.json",
    params:
        w=config["world"],
        out=parent("output"),
    log:
        f"{LOGS}/world.log",
    threads: 1
    resources:
        **resources_for("world"),
    shell:
        "atkd world --out {params.out} --seed {params.w[seed]} --n-train {params.w[n_train]}"
        " --n-valid {params.w[n_valid]} --n-eval {params.w[n_eval]} --n-entities {params.w[n_entities]}"
        " --n-pretrain {params.w[n_pretrain]} --n-fewshot {params.w[n_fewshot]} > {log} 2>&1"


rule tokenizer:
    conda:
        ENV
    input:
        rules.world.output.manifest,
    output:
        f"{TOKENIZER}/tokenizer.json",
    params:
        vocab=config["tokenizer"]["vocab_size"],
        world=parent("input"),
        out=parent("output"),
    log:
        f"{LOGS}/tokenizer.log",
    threads: 1
    resources:
        **resources_for("tokenizer"),
    shell:
        "atkd tokenizer --train {params.world}/train.jsonl {params.world}/pretrain.txt --vocab-size {params.vocab}"
        " --out {params.out} > {log} 2>&1"
