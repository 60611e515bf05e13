#!/usr/bin/env bash
# The whole test suite: installs (pinned, into .tools/) and starts the local
# DynamoDB-compatible servers (moto and dynalite, loopback only), runs every
# test of the workspace against them, and stops the servers again.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p lynk-core    # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-test-servers.sh
scripts/test-servers.sh start
trap 'scripts/test-servers.sh stop' EXIT
eval "$(scripts/test-servers.sh env)"

cargo test --workspace "$@"
