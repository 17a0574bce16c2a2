#!/usr/bin/env bash
# Pre-train a student base on the world's text with line breaks (make_corpus.py), with the zoo's recipe
# for its student (config/zoo.yaml: neox-48x2, 10 epochs, batch 32, blocks of 256, lr 0.002, seed 0), then
# probe it against the default's three teachers on the first 200 validation records, as the workflow's
# `probe` rule probes the zoo's student base. Run from the root of a finished default run (it reads
# results/world, results/tokenizer and results/models/teachers).
#   bash docs/results/base-newlines-2026-12-07/run.sh OUT_DIR
set -euo pipefail
out=${1:?usage: run.sh OUT_DIR}
here=$(dirname "$0")
python "$here/make_corpus.py" results/world "$out/corpus"
atkd train --set 'arch="neox-48x2"' --set epochs=10 --set batch_size=32 --set max_length=256 --set lr=0.002 \
    --set eval_points=10 --set "output_dir=\"$out/student-base\"" --set "train_data=\"$out/corpus/pretrain.jsonl\"" \
    --set "valid_data=\"$out/corpus/pretrain_valid.jsonl\"" --set seed=0 --set threads=1 --set progress=false \
    --set 'tokenizer="results/tokenizer"' > "$out/student_base.log" 2>&1
for t in neox-64x2 neox-128x4 neox-208x6; do
    atkd probe --teacher "results/models/teachers/$t/final" --student "$out/student-base/final" \
        --data results/world/valid.jsonl --name "$t" --out "$out/probes/$t" --limit 200 --max-length 256 \
        --threads 1 > "$out/probe-$t.log" 2>&1
done
