#!/usr/bin/env bash
# Install the local DynamoDB-compatible test servers (and the original Python
# lynk client used for cross-client tests) into the repo-local, git-ignored
# folder .tools/.  Idempotent: when the pinned versions are already present it
# only verifies them and exits in about a second.
#
#   .tools/venv   Python venv: moto[dynamodb] server, flask, flask-cors, boto3,
#                 lynk==0.3.1 (+ a .pth hook loading scripts/pylynk shim)
#   .tools/node   npm prefix with dynalite
#
# Usage: scripts/install-test-servers.sh [--force]
set -euo pipefail

# ---- pinned versions -------------------------------------------------------
MOTO_VERSION=5.2.5
BOTO3_VERSION=1.44.8
FLASK_VERSION=3.1.3
FLASK_CORS_VERSION=6.0.5
PYLYNK_VERSION=0.3.1
DYNALITE_VERSION=4.0.0
# -----------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
NODE_DIR="$TOOLS/node"
SHIM_DIR="$ROOT/scripts/pylynk"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[install-test-servers] %s\n' "$*" >&2; }

mkdir -p "$TOOLS"

# (.tools/, target/ and scripts/pylynk's __pycache__/ are in .gitignore.)

# ---- Python venv -------------------------------------------------------------
pick_python() {
  # Prefer an explicit override, then python3.11, then python3 (>= 3.9).
  local c
  for c in "${LYNK_TEST_BOOTSTRAP_PYTHON:-}" python3.11 python3; do
    [[ -n "$c" ]] || continue
    if command -v "$c" >/dev/null 2>&1 &&
      "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      "$c" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  log "no usable python3 (>= 3.9 with the venv module) found"
  return 1
}

STAMP_PY="moto=$MOTO_VERSION boto3=$BOTO3_VERSION flask=$FLASK_VERSION flask-cors=$FLASK_CORS_VERSION lynk=$PYLYNK_VERSION"

venv_ok() {
  [[ -x "$VENV/bin/python" && -x "$VENV/bin/moto_server" ]] || return 1
  "$VENV/bin/python" - "$MOTO_VERSION" "$BOTO3_VERSION" "$FLASK_VERSION" "$FLASK_CORS_VERSION" "$PYLYNK_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
want = dict(zip(["moto", "boto3", "flask", "flask-cors", "lynk"], sys.argv[1:]))
for name, v in want.items():
    if version(name) != v:
        sys.exit(1)
# the shim must be active (installed via .pth) and lynk importable
import lynk.utils, pylynk_shim  # noqa: F401
assert getattr(lynk.utils.TimeUtils.sleep, "_pylynk_shim", False)
EOF
}

install_shim_pth() {
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # A .pth file: the path line puts scripts/pylynk on sys.path, the import line
  # installs a tiny import hook that patches lynk.utils.TimeUtils.sleep when
  # (and only when) lynk is imported.
  printf '%s\nimport pylynk_shim; pylynk_shim.install()\n' "$SHIM_DIR" >"$site/pylynk_shim.pth"
}

if [[ $FORCE -eq 0 ]] && venv_ok; then
  install_shim_pth # cheap; keeps the path right if the repo moved
  log "python venv ok ($STAMP_PY)"
else
  PY="$(pick_python)"
  log "creating venv $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[dynamodb]==$MOTO_VERSION" \
    "boto3==$BOTO3_VERSION" \
    "flask==$FLASK_VERSION" \
    "flask-cors==$FLASK_CORS_VERSION" \
    "lynk==$PYLYNK_VERSION"
  install_shim_pth
  venv_ok || { log "venv verification failed"; exit 1; }
  log "python venv installed ($STAMP_PY)"
fi

# ---- dynalite ----------------------------------------------------------------
dynalite_ok() {
  local pj="$NODE_DIR/node_modules/dynalite/package.json"
  [[ -f "$pj" ]] || return 1
  node -e 'const p=require(process.argv[1]); process.exit(p.version===process.argv[2]?0:1)' \
    "$pj" "$DYNALITE_VERSION"
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "node/npm not found: install nodejs (>= 20) and npm, e.g. apt-get install -y nodejs npm"
  exit 1
fi

if [[ $FORCE -eq 0 ]] && dynalite_ok; then
  log "dynalite ok ($DYNALITE_VERSION)"
else
  log "installing dynalite@$DYNALITE_VERSION into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  [[ -f "$NODE_DIR/package.json" ]] ||
    printf '{ "name": "lynk-test-tools", "private": true }\n' >"$NODE_DIR/package.json"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error --save-exact "dynalite@$DYNALITE_VERSION")
  dynalite_ok || { log "dynalite verification failed"; exit 1; }
  log "dynalite installed ($DYNALITE_VERSION)"
fi
