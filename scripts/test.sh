#!/usr/bin/env bash
# Install instruct-tune with its test extras (CPU torch) and run lint + the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0 -e ".[test]"
python -m ruff check src tests bench
python -m pytest -q -n 2 "$@"
