# The training world (the synthetic one, or real instruction data for paper profiles) and the tokenizer
# (trained on the world's text, or a pre-trained model's own).


rule world:
    conda:
        ENV
    output:
        manifest=f"{WORLD}/manifest.json",
    params:
        cmd=world_command(),
        version=world_version(),
    log:
        f"{LOGS}/world.log",
    benchmark:
        f"{BENCH}/world.tsv",
    threads: 1
    resources:
        **resources_for("world"),
    shell:
        "{params.cmd} > {log} 2>&1"


rule tokenizer:
    conda:
        ENV
    input:
        rules.world.output.manifest,
    output:
        f"{TOKENIZER}/tokenizer.json",
    params:
        cmd=tokenizer_command(),
    log:
        f"{LOGS}/tokenizer.log",
    benchmark:
        f"{BENCH}/tokenizer.tsv",
    threads: 1
    resources:
        **resources_for("tokenizer"),
    shell:
        "{params.cmd} > {log} 2>&1"
