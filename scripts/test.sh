#!/usr/bin/env bash
# Set up (CPU torch + test extras) and run every test. pytest's "no tests collected" (exit 5) fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export QT_QPA_PLATFORM=offscreen
.venv/bin/ruff check .
(cd ASFDAExtension && ../.venv/bin/lint-imports --config ../pyproject.toml --no-cache)  # the layers (docs/architecture.md)
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
