#!/usr/bin/env python3
"""Run the original Python lynk 0.3.1 client with the Python 3.10+ shim.

    run_pylynk.py cli create-table NAME      # lynk's own CLI (same output)
    run_pylynk.py cli list-tables
    run_pylynk.py cli delete-table NAME
    run_pylynk.py script PATH.py [ARGS...]   # run a script with lynk patched
    run_pylynk.py hold TABLE LOCK SECONDS [LEASE]
        acquire LOCK, print "acquired <versionNumber>", hold it SECONDS
        (auto-refresh on), release, print "released"
    run_pylynk.py acquire-release TABLE LOCK [LEASE] [MAX_WAIT]
        acquire then immediately release; prints "acquired ..."/"released"

Set PYLYNK_TRACE=1 to print the JSON body of every AWS request lynk
sends (wire format) to stderr.

Run it with the python of .tools/venv (LYNK_TEST_PYTHON).  Endpoint and
credentials come from the usual AWS environment variables; for a local
server set AWS_ENDPOINT_URL (lynk's list-tables uses the Resource Groups
Tagging API, so the DynamoDB-only AWS_ENDPOINT_URL_DYNAMODB is not enough).
"""
import os
import runpy
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pylynk_shim  # noqa: E402

pylynk_shim.install()
pylynk_shim.patch_now()


def _install_trace():
    """PYLYNK_TRACE=1: print every AWS request body (wire JSON) to stderr."""
    import botocore.client

    orig = botocore.client.BaseClient._make_request

    def traced(self, operation_model, request_dict, request_context):
        body = request_dict.get("body") or b""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        sys.stderr.write("TRACE %s.%s %s\n" % (
            self.meta.service_model.service_name, operation_model.name, body))
        sys.stderr.flush()
        return orig(self, operation_model, request_dict, request_context)

    botocore.client.BaseClient._make_request = traced


if os.environ.get("PYLYNK_TRACE"):
    _install_trace()


def _cli(argv):
    # lynk 0.3.1 ships its CLI as a plain script (lynk-0.3.1.data/scripts/lynk)
    # installed as <venv>/bin/lynk; run that file so output is byte-identical.
    script = os.path.join(os.path.dirname(sys.executable), "lynk")
    if not os.path.exists(script):
        sys.exit("lynk CLI script not found next to %s" % sys.executable)
    sys.argv = [script] + argv
    runpy.run_path(script, run_name="__main__")


def _print(*a):
    print(*a, flush=True)


def _session(table):
    import lynk

    return lynk.get_session(table, host_identifier=os.environ.get("PYLYNK_HOST_ID"))


def _hold(argv):
    table, name, seconds = argv[0], argv[1], float(argv[2])
    lease = int(argv[3]) if len(argv) > 3 else 20
    lock = _session(table).create_lock(name)
    lock.acquire(lease_duration=lease)
    _print("acquired %s" % lock._technique._versions[name])
    time.sleep(seconds)
    lock.release()
    _print("released")


def _acquire_release(argv):
    table, name = argv[0], argv[1]
    lease = int(argv[2]) if len(argv) > 2 else 20
    max_wait = float(argv[3]) if len(argv) > 3 else 300
    lock = _session(table).create_lock(name)
    lock.acquire(lease_duration=lease, max_wait_seconds=max_wait)
    _print("acquired %s" % lock._technique._versions[name])
    lock.release()
    _print("released")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "cli":
        _cli(argv)
    elif cmd == "script":
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")
    elif cmd == "hold":
        _hold(argv)
    elif cmd == "acquire-release":
        _acquire_release(argv)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
