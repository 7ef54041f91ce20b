#!/usr/bin/env bash
# The whole test suite: unit tests of the pure domain core and integration tests against the real embedded
# broker and database. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
