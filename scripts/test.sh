#!/usr/bin/env bash
# The whole test suite: installs (pinned, into .tools/) and starts the local
# DynamoDB-compatible servers (moto and dynalite, loopback only), runs every
# test of the workspace against them, and stops the servers again.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p lynk-core    # only `cargo test` with these arguments, servers up
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib/servers.sh
trap servers_down EXIT
servers_up always

if [ $# -gt 0 ]; then
  cargo test "$@"
  exit
fi

# The simulations print their figures (seeds, operations, faults,
# violations): their test targets are `test = false` in their crates'
# Cargo.toml, so the first run leaves them out and they run once, below,
# with their output shown.
cargo test --workspace

echo "== simulations (figures printed)"
# (--workspace keeps the features, and so the build, the same as above.)
cargo test --workspace --test simulation --test sim_under_proxy -- --nocapture --test-threads 1

# Every example runs (with short holds), so they stay true. `cargo test`
# built them above.
# (Those on tokio's paused time live in crates/lynk-testkit/examples.)
for example in $(sed -n 's/^name = "\(.*\)"$/\1/p' examples/Cargo.toml | grep -v '^lynk-examples$') \
  $(basename -s .rs crates/lynk-testkit/examples/*.rs); do
  echo "== example $example"
  LYNK_EXAMPLE_HOLD_MS=200 "${CARGO_TARGET_DIR:-target}"/debug/examples/"$example"
done

# The original quickstart's numbers: 2 workers holding 10 s each, lease 20 s.
# lynk finishes in about two hold times; the original needs hold + lease + hold.
echo "== lynk demo (2 workers, 10 s hold)"
"${CARGO_TARGET_DIR:-target}"/debug/lynk demo --workers 2 --hold 10s --lease 20s
