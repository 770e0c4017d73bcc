#!/usr/bin/env bash
# Set up .venv with everything this project uses (runtime, CDK app, tests, benchmarks).
# Safe to run again. As root it also installs Debian's Chromium for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -r requirements-dev.txt
# Node tools the tests use (package.json: asl-validator); node itself is the CDK's requirement too.
npm ci --no-audit --no-fund --silent
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped outside CI" >&2
fi
