#!/bin/sh
# Set up pvwtasks with its test dependencies and run the test suite.
# Usage: sh scripts/test.sh [pytest args]   (.ci/run installs apache2, logrotate and cron first)
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
