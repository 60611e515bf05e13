#!/usr/bin/env bash
# Start/stop the local DynamoDB-compatible test servers installed by
# scripts/install-test-servers.sh.  Both listen on 127.0.0.1 only, on free
# ports (override with LYNK_TEST_MOTO_PORT / LYNK_TEST_DYNALITE_PORT).
#
# moto runs through scripts/moto_linearizable.py, which applies requests one
# at a time: stock `moto_server` applies concurrent requests on threads
# without a lock, so two conditional writes on one version can both succeed
# (see docs/testing.md).
#
#   scripts/test-servers.sh start    # start both (no-op for one already up), wait until they answer
#   scripts/test-servers.sh stop     # kill exactly the processes recorded by start
#   scripts/test-servers.sh status   # show pids/ports and whether they answer
#   scripts/test-servers.sh env      # print `export ...` lines; use: eval "$(scripts/test-servers.sh env)"
#
# State lives in .tools/run/{moto,dynalite}.{pid,port,log}.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
RUN="$TOOLS/run"
PY="$TOOLS/venv/bin/python"
MOTO_LAUNCHER="$ROOT/scripts/moto_linearizable.py"
DYNALITE_CLI="$TOOLS/node/node_modules/dynalite/cli.js"
HOST=127.0.0.1
WAIT_SECS="${LYNK_TEST_SERVER_WAIT_SECS:-60}"

log() { printf '[test-servers] %s\n' "$*" >&2; }

need_install() {
  if [[ ! -x "$PY" || ! -f "$DYNALITE_CLI" ]] || ! "$PY" -c 'import moto.moto_server.werkzeug_app' 2>/dev/null; then
    log "servers not installed: run scripts/install-test-servers.sh first"
    exit 1
  fi
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Marker that must appear in /proc/PID/cmdline for us to treat PID as ours.
marker_for() {
  case "$1" in
  moto) echo "$MOTO_LAUNCHER" ;;
  dynalite) echo "$DYNALITE_CLI" ;;
  esac
}

# pid_alive NAME -> prints pid and returns 0 if the recorded process is still
# the one we started (guards against pid reuse).
pid_alive() {
  local name="$1" pidf="$RUN/$1.pid" pid
  [[ -f "$pidf" ]] || return 1
  pid="$(cat "$pidf")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(marker_for "$name")" || return 1
  echo "$pid"
}

# answers PORT -> 0 if an HTTP server on 127.0.0.1:PORT answers a DynamoDB
# ListTables request with any HTTP response.
answers() {
  "$PY" - "$1" <<'EOF' 2>/dev/null
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("POST", "/", body="{}", headers={
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    "X-Amz-Date": "20200101T000000Z",
})
r = c.getresponse(); r.read()
sys.exit(0 if r.status else 1)
EOF
}

start_one() {
  local name="$1" port_override="$2" pid port
  if pid="$(pid_alive "$name")" && answers "$(cat "$RUN/$name.port")"; then
    log "$name already running (pid $pid, port $(cat "$RUN/$name.port"))"
    return 0
  fi
  local attempt
  for attempt in 1 2 3; do
    port="${port_override:-$(free_port)}"
    case "$name" in
    moto)
      setsid "$PY" "$MOTO_LAUNCHER" -H "$HOST" -p "$port" >"$RUN/moto.log" 2>&1 </dev/null &
      ;;
    dynalite)
      setsid node "$DYNALITE_CLI" --host "$HOST" --port "$port" \
        --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >"$RUN/dynalite.log" 2>&1 </dev/null &
      ;;
    esac
    pid=$!
    echo "$pid" >"$RUN/$name.pid"
    echo "$port" >"$RUN/$name.port"
    local deadline=$((SECONDS + WAIT_SECS))
    while ((SECONDS < deadline)); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if answers "$port"; then
        log "$name started (pid $pid, http://$HOST:$port)"
        return 0
      fi
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not answer on port $port within ${WAIT_SECS}s; killing pid $pid"
      kill "$pid" 2>/dev/null || true
    else
      log "$name exited during startup (attempt $attempt); log follows:"
      tail -n 20 "$RUN/$name.log" >&2 || true
    fi
    rm -f "$RUN/$name.pid" "$RUN/$name.port"
    [[ -n "$port_override" ]] && break
  done
  return 1
}

stop_one() {
  local name="$1" pid i
  if pid="$(pid_alive "$name")"; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    log "$name stopped (pid $pid)"
  else
    log "$name not running"
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.port"
}

print_env() {
  local mp dp
  mp="$(cat "$RUN/moto.port" 2>/dev/null || true)"
  dp="$(cat "$RUN/dynalite.port" 2>/dev/null || true)"
  if [[ -z "$mp" || -z "$dp" ]]; then
    log "servers not started: run scripts/test-servers.sh start"
    exit 1
  fi
  cat <<EOF
export LYNK_TEST_MOTO_ENDPOINT=http://$HOST:$mp
export LYNK_TEST_DYNALITE_ENDPOINT=http://$HOST:$dp
export LYNK_TEST_PYTHON=$PY
export LYNK_TEST_PYLYNK=$ROOT/scripts/pylynk/run_pylynk.py
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
EOF
}

cmd="${1:-}"
case "$cmd" in
start)
  need_install
  mkdir -p "$RUN"
  start_one moto "${LYNK_TEST_MOTO_PORT:-}"
  start_one dynalite "${LYNK_TEST_DYNALITE_PORT:-}"
  ;;
stop)
  mkdir -p "$RUN"
  stop_one moto
  stop_one dynalite
  ;;
status)
  rc=0
  for n in moto dynalite; do
    if pid="$(pid_alive "$n")" && answers "$(cat "$RUN/$n.port")"; then
      echo "$n: running pid $pid http://$HOST:$(cat "$RUN/$n.port")"
    else
      echo "$n: not running"
      rc=1
    fi
  done
  exit $rc
  ;;
env)
  print_env
  ;;
*)
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
  ;;
esac
