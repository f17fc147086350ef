#!/usr/bin/env bash
# One-step, reproducible install into ./.venv (idempotent: a no-op when nothing changed).
# Why two pip calls: mmpose 1.3.2 declares chumpy, which cannot build on Python 3.11 and is never
# imported, so mmpose goes in with --no-deps after everything it really needs (listed in pyproject).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${PEVL_VENV:-.venv}
stamp="$VENV/.pevl-install-stamp"
want=$(cat pyproject.toml setup.py scripts/install.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# the interpreter the venv has (or will be made from)
[ -x "$VENV/bin/python" ] && PYV="$VENV/bin/python" || PYV="$PY"
if ! "$PYV" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' 2>/dev/null; then
  echo "install.sh: $PYV is Python $("$PYV" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?'); this project needs 3.11 or 3.12 (zarr 3 needs 3.11; numpy<2 has no 3.13 wheel): set PYTHON=python3.11 (and remove $VENV if it holds another)" >&2
  exit 1
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade "pip<27"
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
"$VENV/bin/python" -m pip install -q --no-deps "mmpose==1.3.2"
echo "$want" > "$stamp"
echo "pevl-pipeline installed into $VENV in $(( $(date +%s) - start )) s" >&2
