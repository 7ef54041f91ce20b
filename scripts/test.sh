#!/usr/bin/env bash
# The whole test suite: unit tests of the pure domain core, integration tests against the real embedded broker
# and database, and the deploy/ tests: promtool (Debian's `prometheus` package, which also brings the Prometheus
# server the end-to-end test runs) and amtool (Debian's `prometheus-alertmanager`), installed here when missing
# and we may use apt-get. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}") >/dev/null || echo "warning: could not install ${missing[*]}; the deploy/ tests will fail" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}") >/dev/null || echo "warning: could not install ${missing[*]}; the deploy/ tests will fail" >&2
  else
    echo "warning: ${missing[*]} missing (apt-get install ${missing[*]}); the deploy/ tests will fail" >&2
  fi
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
