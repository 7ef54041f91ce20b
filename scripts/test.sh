#!/usr/bin/env bash
# The whole test suite: unit tests of the pure domain core, integration tests against the real embedded broker
# and database, and the Prometheus alert-rule tests (promtool, from Debian's `prometheus` package, installed here
# when missing and we may use apt-get). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) \
      >/dev/null || echo "warning: could not install promtool; the alert-rule tests will fail" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus) >/dev/null || echo "warning: could not install promtool; the alert-rule tests will fail" >&2
  else
    echo "warning: promtool is missing (apt-get install prometheus); the alert-rule tests will fail" >&2
  fi
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
