#!/usr/bin/env bash
# Run a command inside the project's virtual environment (.venv), creating and filling it first when
# it is missing or when pyproject.toml changed since the last install:
#   ./dev.sh lrbench run quick      the main job
#   ./dev.sh pytest                 the tests
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${LRBENCH_VENV:-$here/.venv}"
stamp="$venv/.lrbench-installed"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "dev.sh: creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  echo "dev.sh: installing lrbench and its dependencies into $venv (first run: several minutes)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -e "$here[dev]" >&2
  touch "$stamp"
fi
[ $# -gt 0 ] || { echo "usage: ./dev.sh COMMAND [ARGS...]   e.g. ./dev.sh lrbench run quick" >&2; exit 2; }
cmd="$1"; shift
if [ -x "$venv/bin/$cmd" ]; then exec "$venv/bin/$cmd" "$@"; fi
exec "$cmd" "$@"
