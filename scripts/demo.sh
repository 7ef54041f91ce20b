#!/usr/bin/env bash
# The demo: embedded Kafka-protocol broker (Tansu) and PostgreSQL (pgserver), the three workers, a realistic
# sample of events and unit updates, and a summary. Extra arguments go to `hotline demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hotline demo "$@"
