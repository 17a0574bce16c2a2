#!/usr/bin/env bash
# The project's test command (README): lint, then the tests.
#   bash scripts/test.sh          fast tier: every test not marked e2e or real_model (minutes)
#   bash scripts/test.sh --all    both tiers: also the end-to-end runs (workflow, kill/resume, SLURM,
#                                 several processes) and the real pre-trained model; what CI runs
# Other arguments go to pytest (e.g. bash scripts/test.sh tests/test_losses.py -x).
set -euo pipefail
cd "$(dirname "$0")/.."
tier=(-m "not e2e and not real_model")
args=()
for arg in "$@"; do
    if [[ "$arg" == "--all" ]]; then tier=(); else args+=("$arg"); fi
done
ruff check .
python -m pytest -q "${tier[@]}" "${args[@]}"
