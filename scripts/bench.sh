#!/usr/bin/env bash
# Runs every lynk benchmark and prints the figures, side by side with the
# original Python lynk 0.3.1 and the Rust crate dynamodb-lease (see
# docs/benchmarks.md for what each figure means).
#
#   scripts/bench.sh           # full run, about 5 minutes
#   scripts/bench.sh --smoke   # every measurement with tiny counts (CI); never asserts timings
#
# Builds crates/lynk-bench in release, installs and starts the local test
# servers (moto, dynalite) if needed, stops them afterwards if it started
# them. Figures go to stdout and, as JSON lines, to target/bench/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE=""
[[ "${1:-}" == "--smoke" ]] && SMOKE="--smoke"

log() { printf '\n[bench] %s\n' "$*" >&2; }

log "building lynk-bench (release)"
cargo build --release -p lynk-bench --quiet
BIN="$ROOT/target/release/lynk-bench"

scripts/install-test-servers.sh
STARTED=0
if ! scripts/test-servers.sh status >/dev/null 2>&1; then
  STARTED=1
fi
scripts/test-servers.sh start
cleanup() { if [[ $STARTED == 1 ]]; then scripts/test-servers.sh stop || true; fi; }
trap cleanup EXIT
eval "$(scripts/test-servers.sh env)"
PY="$LYNK_TEST_PYTHON"
MOTO="$LYNK_TEST_MOTO_ENDPOINT"
DYNALITE="$LYNK_TEST_DYNALITE_ENDPOINT"

mkdir -p target/bench
OUT="target/bench/results-$(date -u +%Y%m%dT%H%M%SZ)${SMOKE:+-smoke}.jsonl"
: >"$OUT"
endpoint() { if [[ $1 == moto ]]; then echo "$MOTO"; else echo "$DYNALITE"; fi; }

if [[ -n $SMOKE ]]; then
  SERVERS=(moto)          # every measurement, one emulator (dynalite: full run)
  ROUNDS=2; PY_DMAX=1.1; DMAX=0.6
else
  SERVERS=(dynalite moto)
  ROUNDS=10; PY_DMAX=2.05; DMAX=1.1
fi

log "lynk on the in-memory backend (pure client cost)"
"$BIN" suite --server memory --json "$OUT" $SMOKE
log "lynk: locks held at once by one client (in-memory backend)"
"$BIN" scale --json "$OUT" $SMOKE

for S in dynalite moto; do
  log "lynk on $S (emulator-bound)"
  "$BIN" suite --server "$S" --endpoint "$(endpoint "$S")" --json "$OUT" $SMOKE
done

log "dynamodb-lease on moto (dynalite lacks the TTL API it requires)"
"$BIN" peer --endpoint "$MOTO" --label moto --json "$OUT" $SMOKE

for S in "${SERVERS[@]}"; do
  log "original Python lynk 0.3.1 on $S"
  "$PY" scripts/bench/pylynk_bench.py suite --endpoint "$(endpoint "$S")" --server "$S" --json "$OUT" $SMOKE
done

for S in "${SERVERS[@]}"; do
  E="$(endpoint "$S")"
  log "cross-process handover on $S"
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  "$PY" scripts/bench/xproc.py --impl lynk --server "$S" --rounds "$ROUNDS" --dmin 0.1 --dmax "$DMAX" \
    --note "default settings (poll 1 s)" --json "$OUT" -- \
    "$BIN" worker --imp lynk --server "$S" --endpoint "$E" --table "$T"
  T="$("$BIN" setup-table --imp lynk --endpoint "$E")"
  "$PY" scripts/bench/xproc.py --impl python-lynk --server "$S" --rounds "$ROUNDS" --dmin 0.05 --dmax "$PY_DMAX" \
    --note "lease 2 s" --json "$OUT" -- \
    "$PY" scripts/bench/pylynk_bench.py worker --endpoint "$E" --table "$T" --lease 2
done
T="$("$BIN" setup-table --imp peer --endpoint "$MOTO")"
"$PY" scripts/bench/xproc.py --impl dynamodb-lease --server moto --rounds "$ROUNDS" --dmin 0.1 --dmax "$DMAX" \
  --note "default settings (retry every 1 s)" --json "$OUT" -- \
  "$BIN" worker --imp peer --server moto --endpoint "$MOTO" --table "$T"

log "results ($OUT)"
"$PY" scripts/bench/report.py "$OUT"
