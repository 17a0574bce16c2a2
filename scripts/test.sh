#!/usr/bin/env bash
# The project's test command (README): lint, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
python -m pytest -q "$@"
