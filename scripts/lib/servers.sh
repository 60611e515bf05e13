# Sourced by scripts/test.sh and scripts/bench.sh (from the repo root): the
# local DynamoDB-compatible test servers, installed (pinned, into .tools/),
# started, and their endpoints in the environment.
#
#   servers_up POLICY   # POLICY: when servers_down stops them:
#                       #   always      (scripts/test.sh)
#                       #   if-started  only if they were not already running (scripts/bench.sh)
#   servers_down        # stops them if POLICY says so; call it from an EXIT trap

SERVERS_STOP=0

servers_up() {
  local policy="$1"
  scripts/install-test-servers.sh
  case "$policy" in
    always) SERVERS_STOP=1 ;;
    if-started) scripts/test-servers.sh status >/dev/null 2>&1 || SERVERS_STOP=1 ;;
    *) echo "servers_up: unknown stop policy '$policy' (always, if-started)" >&2; return 2 ;;
  esac
  scripts/test-servers.sh start
  eval "$(scripts/test-servers.sh env)"
}

servers_down() {
  if [[ $SERVERS_STOP == 1 ]]; then scripts/test-servers.sh stop || true; fi
}
