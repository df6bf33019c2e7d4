#!/usr/bin/env bash
# One entry point for a fresh machine (Python 3.11 + pip, nothing else):
#   bash dev.sh app [ARGS]   set up .venv and start the app (offline shapes preset by default)
#   bash dev.sh test [ARGS]  set up .venv and Chromium, check lint and format, then run the whole test suite
#   bash dev.sh bench        set up .venv and run the benchmarks (writes docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

setup_venv() {  # $1: requirements file; re-installs only when it changed
  local reqs=$1 stamp="$VENV/.installed-$(basename "$1")"
  [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
  if [[ ! -f $stamp ]] || ! cmp -s <(cat requirements.txt "$reqs" pyproject.toml) "$stamp"; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$reqs"
    "$VENV/bin/python" -m pip install --quiet --no-deps -e .  # the `cascade` console script
    cat requirements.txt "$reqs" pyproject.toml > "$stamp"
  fi
}

setup_chromium() {  # Debian's Chromium drives the browser tests (Playwright's own download cannot run here)
  if [[ ! -x /usr/bin/chromium ]]; then
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
  fi
}

cmd=${1:-app}; shift || true
case "$cmd" in
  app)   setup_venv requirements.txt; exec "$VENV/bin/python" app.py "$@" ;;
  test)  setup_venv requirements-dev.txt; setup_chromium
         "$VENV/bin/ruff" check .  # lint and format first: seconds, not minutes
         "$VENV/bin/ruff" format --check .
         export HF_HUB_OFFLINE=1
         # One worker per core, a module's tests on one worker (tests/conftest.py says why); -n 0 runs serially.
         exec "$VENV/bin/python" -m pytest -n auto --dist loadgroup --no-loadscope-reorder "$@" ;;
  bench) setup_venv requirements-dev.txt; exec "$VENV/bin/python" -m bench "$@" ;;
  *)     echo "usage: bash dev.sh app|test|bench [ARGS]" >&2; exit 2 ;;
esac
