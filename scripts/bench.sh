#!/usr/bin/env bash
# Runs every lynk benchmark and prints the figures, side by side with the
# original Python lynk 0.3.1 and the Rust crate dynamodb-lease (see
# docs/benchmarks.md for what each figure means).
#
#   scripts/bench.sh           # full run, about 10 minutes
#   scripts/bench.sh --smoke   # every measurement with tiny counts (CI, about 2 min); never asserts timings
#
# The original's handovers at its default lease (20 s) take one lease each,
# so they run in the background, concurrently with the rest (they sleep).
#
# Builds crates/lynk-bench and the CLI (target/release/lynk) in release, installs and starts the local test
# servers (moto, dynalite) if needed, stops them afterwards if it started
# them. Figures go to stdout and, as JSON lines, to target/bench/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE=""
[[ "${1:-}" == "--smoke" ]] && SMOKE="--smoke"

log() { printf '\n[bench %3ds] %s\n' "$SECONDS" "$*" >&2; }

log "building lynk-bench and the lynk CLI (release)"
cargo build --release -p lynk-bench -p lynk-cli --quiet
BIN="$ROOT/target/release/lynk-bench"
CLI="$ROOT/target/release/lynk"

source scripts/lib/servers.sh
BG_PIDS=()
cleanup() {
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  servers_down
}
trap cleanup EXIT
servers_up if-started
PY="$LYNK_TEST_PYTHON"
MOTO="$LYNK_TEST_MOTO_ENDPOINT"
DYNALITE="$LYNK_TEST_DYNALITE_ENDPOINT"

mkdir -p target/bench
OUT="target/bench/results-$(date -u +%Y%m%dT%H%M%SZ)${SMOKE:+-smoke}.jsonl"
: >"$OUT"
endpoint() { if [[ $1 == moto ]]; then echo "$MOTO"; else echo "$DYNALITE"; fi; }

if [[ -n $SMOKE ]]; then
  SERVERS=(moto)          # every measurement, one emulator (dynalite: full run)
  ROUNDS=2; PY_DMAX=1.1; DMAX=0.6; LYNK_DMAX=0.6
  FAIR_ROUNDS=1; WAIT_WINDOW=3
  DEF_LEASE=1; DEF_ROUNDS=1   # exercises the default-lease path in seconds (labelled _lease1s)
else
  SERVERS=(dynalite moto)
  ROUNDS=10; PY_DMAX=2.05; DMAX=1.1
  LYNK_DMAX=1.6               # lynk's poll interval is 1.5 s: releases over its whole poll phase
  FAIR_ROUNDS=10; WAIT_WINDOW=10
  DEF_LEASE=20; DEF_ROUNDS=3  # the original's default lease: about 20 s per handover
fi
WAKE=(--wake-listen 127.0.0.1:0)  # lynk's workers, with wake-ups (scope: the table)
DEF_SUFFIX=""; [[ $DEF_LEASE != 20 ]] && DEF_SUFFIX="_lease${DEF_LEASE}s"
# Nothing here may hang the run: each background measurement is stopped
# after a generous bound (each handover takes at most about two leases).
BG_LIMIT=$((DEF_ROUNDS * DEF_LEASE * 4 + 300))
STEP_LIMIT=900   # any one foreground measurement (a full run's longest takes about a minute)
bounded() { timeout -k 10 "$STEP_LIMIT" "$@"; }

# The original at its default lease: in-process (one session, two threads, as
# in its quickstart) and cross-process handovers, in the background, each
# into its own file (merged into $OUT at the end).
BG_FILES=()
default_lease_handovers() {
  local S="$1" E T
  E="$(endpoint "$S")"
  local J="$OUT.bg-$S-inproc" L="$OUT.bg-$S-inproc.log"
  BG_FILES+=("$J"); : >"$J"
  timeout -k 10 "$BG_LIMIT" "$PY" scripts/bench/pylynk_bench.py handover --endpoint "$E" --server "$S" --lease "$DEF_LEASE" \
    --handovers "$DEF_ROUNDS" --json "$J" >"$L" 2>&1 &
  BG_PIDS+=($!)
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  J="$OUT.bg-$S-xproc"; L="$OUT.bg-$S-xproc.log"
  BG_FILES+=("$J"); : >"$J"
  timeout -k 10 "$BG_LIMIT" "$PY" scripts/bench/xproc.py --impl python-lynk --server "$S" --rounds "$DEF_ROUNDS" \
    --dmin 0.05 --dmax "$DEF_LEASE.05" --metric-suffix "$DEF_SUFFIX" \
    --note "lease $DEF_LEASE s$([[ $DEF_LEASE == 20 ]] && echo ' (its default)')" --json "$J" -- \
    "$PY" scripts/bench/pylynk_bench.py worker --endpoint "$E" --table "$T" --lease "$DEF_LEASE" >"$L" 2>&1 &
  BG_PIDS+=($!)
  [[ $S == moto ]] || return 0
  # A short critical section, and fairness, at its default lease (moto only).
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  J="$OUT.bg-$S-short"; L="$OUT.bg-$S-short.log"
  BG_FILES+=("$J"); : >"$J"
  timeout -k 10 "$BG_LIMIT" "$PY" scripts/bench/xproc.py --mode short --impl python-lynk --server "$S" \
    --rounds "$DEF_ROUNDS" --metric-suffix "$DEF_SUFFIX" \
    --note "lease $DEF_LEASE s$([[ $DEF_LEASE == 20 ]] && echo ' (its default)')" --json "$J" -- \
    "$PY" scripts/bench/pylynk_bench.py worker --endpoint "$E" --table "$T" --lease "$DEF_LEASE" >"$L" 2>&1 &
  BG_PIDS+=($!)
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  J="$OUT.bg-$S-fair"; L="$OUT.bg-$S-fair.log"
  BG_FILES+=("$J"); : >"$J"
  timeout -k 10 "$((BG_LIMIT + DEF_ROUNDS * DEF_LEASE * 4))" "$PY" scripts/bench/fairness.py --impl python-lynk \
    --server "$S" --rounds "$DEF_ROUNDS" --metric-suffix "$DEF_SUFFIX" \
    --note "lease $DEF_LEASE s$([[ $DEF_LEASE == 20 ]] && echo ' (its default)')" --json "$J" -- \
    "$PY" scripts/bench/pylynk_bench.py worker --endpoint "$E" --table "$T" --lease "$DEF_LEASE" >"$L" 2>&1 &
  BG_PIDS+=($!)
}

log "lynk on the in-memory backend (pure client cost)"
bounded "$BIN" suite --server memory --json "$OUT" $SMOKE
log "lynk: locks held at once by one client (in-memory backend)"
bounded "$BIN" scale --json "$OUT" $SMOKE
bounded "$BIN" cost --json "$OUT"  # issue 14: requests and units per hour held and waiting (1 h of paused time)

log "started in the background: the original's handovers at lease $DEF_LEASE s on ${SERVERS[*]} ($DEF_ROUNDS each)"
for S in "${SERVERS[@]}"; do default_lease_handovers "$S"; done

for S in dynalite moto; do
  log "lynk on $S (emulator-bound)"
  bounded "$BIN" suite --server "$S" --endpoint "$(endpoint "$S")" --json "$OUT" $SMOKE
done

for S in "${SERVERS[@]}"; do
  log "the floor on $S: lynk and dynamodb-lease against the bare SDK sending the same requests (issue 14)"
  bounded "$BIN" floor --server "$S" --endpoint "$(endpoint "$S")" --json "$OUT" $SMOKE
  log "the same on tokio's multi-thread runtime (figures under server $S-mt)"
  bounded "$BIN" --multi-thread floor --server "$S" --endpoint "$(endpoint "$S")" --json "$OUT" $SMOKE
done

log "instructions per cycle under callgrind: lynk, dynamodb-lease and their floors (issue 14; repeatable where CPU time is not)"
if [[ -n $SMOKE ]]; then
  bounded python3 scripts/bench/instructions.py --moto "$MOTO" --json "$OUT" --smoke
else
  bounded python3 scripts/bench/instructions.py --moto "$MOTO" --dynalite "$DYNALITE" --json "$OUT"
fi

log "dynamodb-lease on moto (dynalite lacks the TTL API it requires)"
bounded "$BIN" peer --endpoint "$MOTO" --label moto --json "$OUT" $SMOKE

for S in "${SERVERS[@]}"; do
  log "original Python lynk 0.3.1 on $S"
  bounded "$PY" scripts/bench/pylynk_bench.py suite --endpoint "$(endpoint "$S")" --server "$S" --json "$OUT" $SMOKE
done

# Cross-process: handover at a random moment (xproc), a short critical
# section (xproc --mode short: the holder works 0.3 s, the waiter starts
# 0.1 s into it) and fairness (three waiters 0.6 s apart). lynk with its
# defaults and with wake-ups (suffix _wake), on every server; the original at
# lease 2 s (suffix _lease2s; at its default lease in the background, moto)
# and dynamodb-lease at its defaults, on moto.
lynk_xproc() {  # SERVER ENDPOINT SUFFIX NOTE [WORKER OPTIONS...]
  local S="$1" E="$2" X="$3" N="$4" T; shift 4
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  bounded "$PY" scripts/bench/xproc.py --impl lynk --server "$S" --rounds "$ROUNDS" --dmin 0.1 --dmax "$LYNK_DMAX" \
    --metric-suffix "$X" --note "$N" --json "$OUT" -- \
    "$BIN" worker --imp lynk --server "$S" --endpoint "$E" --table "$T" "$@"
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  bounded "$PY" scripts/bench/xproc.py --mode short --impl lynk --server "$S" --rounds "$ROUNDS" \
    --metric-suffix "$X" --note "$N" --json "$OUT" -- \
    "$BIN" worker --imp lynk --server "$S" --endpoint "$E" --table "$T" "$@"
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  bounded "$PY" scripts/bench/fairness.py --impl lynk --server "$S" --rounds "$FAIR_ROUNDS" \
    --metric-suffix "$X" --note "$N" --json "$OUT" -- \
    "$BIN" worker --imp lynk --server "$S" --endpoint "$E" --table "$T" "$@"
}
for S in "${SERVERS[@]}"; do
  E="$(endpoint "$S")"
  log "cross-process on $S: lynk, default settings"
  lynk_xproc "$S" "$E" "" "default settings (poll 0.1 s after the first attempt, doubling to 1.5 s)"
  log "cross-process on $S: lynk with wake-ups"
  lynk_xproc "$S" "$E" _wake "wake-ups on (workers listen on 127.0.0.1:0), otherwise defaults" "${WAKE[@]}"
done
for S in "${SERVERS[@]}"; do
  E="$(endpoint "$S")"
  log "cross-process handover on $S: the original at lease 2 s"
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  bounded "$PY" scripts/bench/xproc.py --impl python-lynk --server "$S" --rounds "$ROUNDS" --dmin 0.05 --dmax "$PY_DMAX" \
    --metric-suffix _lease2s --note "lease 2 s (not its default)" --json "$OUT" -- \
    "$PY" scripts/bench/pylynk_bench.py worker --endpoint "$E" --table "$T" --lease 2
done
log "cross-process on moto: the original at lease 2 s, short critical section and fairness"
T="$("$BIN" setup-table --imp lynk --endpoint "$MOTO")"
bounded "$PY" scripts/bench/xproc.py --mode short --impl python-lynk --server moto --rounds "$ROUNDS" \
  --metric-suffix _lease2s --note "lease 2 s (not its default)" --json "$OUT" -- \
  "$PY" scripts/bench/pylynk_bench.py worker --endpoint "$MOTO" --table "$T" --lease 2
T="$("$BIN" setup-table --imp lynk --endpoint "$MOTO")"
bounded "$PY" scripts/bench/fairness.py --impl python-lynk --server moto --rounds "$FAIR_ROUNDS" \
  --metric-suffix _lease2s --note "lease 2 s (not its default)" --json "$OUT" -- \
  "$PY" scripts/bench/pylynk_bench.py worker --endpoint "$MOTO" --table "$T" --lease 2
log "cross-process on moto: dynamodb-lease"
PEER_NOTE="default settings (retry every 1 s)"
T="$("$BIN" setup-table --imp peer --endpoint "$MOTO")"
bounded "$PY" scripts/bench/xproc.py --impl dynamodb-lease --server moto --rounds "$ROUNDS" --dmin 0.1 --dmax "$DMAX" \
  --note "$PEER_NOTE" --json "$OUT" -- \
  "$BIN" worker --imp peer --server moto --endpoint "$MOTO" --table "$T"
T="$("$BIN" setup-table --imp peer --endpoint "$MOTO")"
bounded "$PY" scripts/bench/xproc.py --mode short --impl dynamodb-lease --server moto --rounds "$ROUNDS" \
  --note "$PEER_NOTE" --json "$OUT" -- \
  "$BIN" worker --imp peer --server moto --endpoint "$MOTO" --table "$T"
T="$("$BIN" setup-table --imp peer --endpoint "$MOTO")"
bounded "$PY" scripts/bench/fairness.py --impl dynamodb-lease --server moto --rounds "$FAIR_ROUNDS" \
  --note "$PEER_NOTE" --json "$OUT" -- \
  "$BIN" worker --imp peer --server moto --endpoint "$MOTO" --table "$T"

# Requests per waiting second, counted by a dedicated moto (its request
# recorder, attributed by access key id; see scripts/bench/waitcount.py).
log "requests per waiting second over a $WAIT_WINDOW s wait, counted at the server (a dedicated moto)"
LYNK_SETUP="$BIN setup-table --imp lynk --endpoint {endpoint}"
LYNK_HOLDER="$BIN worker --imp lynk --server moto --endpoint {endpoint} --table {table} --lock wait"
LYNK_WAITER="$CLI --endpoint-url {endpoint} --quiet run {table} wait"
CLI_WAKE=()
if "$CLI" run --help | grep -q -- --wake-listen; then
  CLI_WAKE=(--case lynk req_per_wait_s_server_wake cli "lynk run --wake-listen 127.0.0.1:0 (holder with wake-ups too)"
    "$LYNK_SETUP" "$LYNK_HOLDER ${WAKE[*]}" --waiter "$LYNK_WAITER ${WAKE[*]} -- true")
else
  echo "[bench] this lynk CLI has no 'run --wake-listen': its waiting cost with wake-ups is not measured" >&2
fi
bounded "$PY" scripts/bench/waitcount.py --server-cmd "$PY scripts/moto_linearizable.py" \
  --window "$WAIT_WINDOW" --json "$OUT" \
  --case lynk req_per_wait_s_server cli "lynk run (the CLI), default settings" \
    "$LYNK_SETUP" "$LYNK_HOLDER" \
  --waiter "$LYNK_WAITER -- true" \
  "${CLI_WAKE[@]}" \
  --case lynk req_per_wait_s_server_lib worker "the library (a lynk-bench worker), default settings" \
    "$LYNK_SETUP" "$LYNK_HOLDER" --waiter "$LYNK_HOLDER" \
  --case lynk req_per_wait_s_server_lib_wake worker "the library (a lynk-bench worker), wake-ups on" \
    "$LYNK_SETUP" "$LYNK_HOLDER ${WAKE[*]}" --waiter "$LYNK_HOLDER ${WAKE[*]}" \
  --case python-lynk req_per_wait_s_server worker "lease 20 s (its default)" \
    "$LYNK_SETUP" "$PY scripts/bench/pylynk_bench.py worker --endpoint {endpoint} --table {table} --lock wait" \
  --waiter "$PY scripts/bench/pylynk_bench.py worker --endpoint {endpoint} --table {table} --lock wait" \
  --case dynamodb-lease req_per_wait_s_server worker "$PEER_NOTE" \
    "$BIN setup-table --imp peer --endpoint {endpoint}" \
    "$BIN worker --imp peer --server moto --endpoint {endpoint} --table {table} --lock wait" \
  --waiter "$BIN worker --imp peer --server moto --endpoint {endpoint} --table {table} --lock wait"

log "waiting for the original's handovers at lease $DEF_LEASE s"
for i in "${!BG_PIDS[@]}"; do
  status=0; wait "${BG_PIDS[$i]}" || status=$?
  if [[ $status != 0 ]]; then
    cat "${BG_FILES[$i]}.log" >&2
    [[ $status == 124 ]] && echo "[bench] background measurement did not finish within $BG_LIMIT s" >&2
    echo "[bench] background measurement failed (exit $status): ${BG_FILES[$i]}" >&2
    exit 1
  fi
  grep -v '^$' "${BG_FILES[$i]}.log" | grep -E '^(python-lynk |\[python-lynk\])' || true
  cat "${BG_FILES[$i]}" >>"$OUT"
  rm -f "${BG_FILES[$i]}" "${BG_FILES[$i]}.log"
done
BG_PIDS=()   # all reaped: nothing for cleanup to stop

log "results ($OUT)"
"$PY" scripts/bench/report.py "$OUT" $SMOKE
