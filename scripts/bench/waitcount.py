#!/usr/bin/env python3
"""Requests per waiting second, counted at the server.

    waitcount.py --server-cmd "PY scripts/moto_linearizable.py" --json F --window 10 \\
        --case IMPL METRIC MODE NOTE SETUP_CMD HOLDER_CMD --waiter WAITER_CMD [--case ... --waiter ...]...

The count is the server's, not the client's: a dedicated moto (scripts/
moto_linearizable.py, on a free port, for this measurement alone) runs with
moto's own request recorder on (MOTO_ENABLE_RECORDING, one JSON line per
request received, with its headers, written before moto handles it). Each
process signs with its own access key id (moto accepts any), so every
recorded request is attributed to its process by the `Credential=` of its
Authorization header; the operation comes from `X-Amz-Target`.

Each case, on its own table and lock: a holder process (a worker of
xproc.py's protocol, its own access key) acquires and holds; the waiter
starts waiting at t0 and the recording is read at t0 + window, while the
waiter still waits (the holder has not released). The figure is the
waiter's requests recorded in [t0, t0 + window] / window. The waiter is:

- `cli`: a command (e.g. `lynk run TABLE LOCK -- true`) started at t0: the
  count includes everything the process sends from its start; once the
  holder has released it must get the lock and end with status 0, else no
  figure;
- `worker`: a worker process (the original, dynamodb-lease), started and
  `ready` before t0 (its start-up requests, such as dynamodb-lease's table
  check, are before t0 and not counted), then told `acquire` at t0.

SETUP_CMD creates the case's table at `{endpoint}` and prints its name;
`{table}` and `{endpoint}` in the commands are replaced. Figure:
req_per_wait_s_server (req/s), plus the breakdown by operation in the note.
"""
import argparse
import base64
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xproc  # noqa: E402
from xproc import Worker  # noqa: E402

SECRET = "bench-secret"


def env_for(key):
    e = dict(os.environ)
    e["AWS_ACCESS_KEY_ID"] = key
    e["AWS_SECRET_ACCESS_KEY"] = SECRET
    e.pop("AWS_SESSION_TOKEN", None)
    return e


class Server:
    """A dedicated moto with its request recorder writing to a temp file."""

    def __init__(self, cmd, deadline_s=60):
        fd, self.recording = tempfile.mkstemp(prefix="lynk-bench-moto-recording-")
        os.close(fd)
        env = dict(os.environ, MOTO_ENABLE_RECORDING="True", MOTO_RECORDER_FILEPATH=self.recording)
        self.p = subprocess.Popen(shlex.split(cmd) + ["-p", "0"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        found = {}

        def read():
            for line in self.p.stderr:
                m = re.search(r"Running on (http://\S+)", line)
                if m and "url" not in found:
                    found["url"] = m.group(1)
            # keep draining: werkzeug logs every request on stderr

        threading.Thread(target=read, daemon=True).start()
        t_end = time.monotonic() + deadline_s
        while "url" not in found:
            if self.p.poll() is not None or time.monotonic() > t_end:
                raise SystemExit("the dedicated moto did not start (exit %s)" % self.p.poll())
            time.sleep(0.05)
        self.url = found["url"]

    def requests(self):
        """(access key, operation) of every request recorded so far."""
        out = []
        with open(self.recording) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue  # a line being written
                h = {k.lower(): v for k, v in r.get("headers", {}).items()}
                m = re.search(r"Credential=([^/]+)/", h.get("authorization", ""))
                op = h.get("x-amz-target", "?").split(".")[-1]
                out.append((m.group(1) if m else "?", op))
        return out

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        os.unlink(self.recording)


def count(server, key):
    ops = {}
    for k, op in server.requests():
        if k == key:
            ops[op] = ops.get(op, 0) + 1
    return ops


def one_case(a, server, n, impl, metric, mode, note, setup, holder_cmd, waiter_cmd):
    table = subprocess.run(shlex.split(setup.format(endpoint=server.url)), check=True, capture_output=True,
                           text=True, timeout=120).stdout.strip().splitlines()[-1]
    sub = lambda c: [x.format(table=table, endpoint=server.url) for x in shlex.split(c)]
    hkey, wkey = "benchholder%d" % n, "benchwaiter%d" % n
    procs = []
    try:
        holder = Worker(sub(holder_cmd), env=env_for(hkey))
        procs.append(holder)
        holder.send("acquire")
        holder.expect("acquired")
        if mode == "worker":
            waiter = Worker(sub(waiter_cmd), env=env_for(wkey))
            procs.append(waiter)
            before = count(server, wkey)
            t0 = time.monotonic()
            waiter.send("acquire")
        else:
            before = count(server, wkey)
            t0 = time.monotonic()
            cli = subprocess.Popen(sub(waiter_cmd), env=env_for(wkey), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL)
            procs.append(cli)
        time.sleep(max(t0 + a.window - time.monotonic(), 0))
        after = count(server, wkey)
        if mode == "cli" and cli.poll() is not None:
            raise SystemExit("%s: the waiter exited (status %s) before the window ended" % (impl, cli.poll()))
        holder.send("release")
        holder.expect("released")
        if mode == "cli":
            # It gets the lock and runs its command (`true`): it must end
            # with status 0, or the figure is not of what it claims (e.g. a
            # CLI without an option takes the option for the command).
            try:
                status = cli.wait(timeout=30)
            except subprocess.TimeoutExpired:
                status = "none within 30 s of the release"
            if status != 0:
                print("[%s] %s: the waiting command did not succeed (exit %s); no figure" % (impl, metric, status),
                      file=sys.stderr, flush=True)
                return
    finally:
        for p in procs:
            if isinstance(p, Worker):
                p.kill()
            elif p.poll() is None:
                p.kill()
                p.wait()
    ops = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(ops.values())
    value = total / a.window
    breakdown = ", ".join("%d %s" % (v, k) for k, v in sorted(ops.items(), key=lambda kv: -kv[1]) if v)
    full = "counted at the server (moto's request recorder, by access key): %d requests in a %.0f s wait (%s)%s" % (
        total, a.window, breakdown or "none", (", " + note) if note else "")
    print("%-15s %-9s %-28s %14.3f %-10s %s" % (impl, "moto", metric, value, "req/s", full), flush=True)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"impl": impl, "server": "moto", "metric": metric, "value": value,
                                "unit": "req/s", "note": full}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-cmd", required=True, help="moto launcher (gets -p 0 appended)")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--json")
    ap.add_argument("--case", nargs=6, action="append", default=[],
                    metavar=("IMPL", "METRIC", "MODE", "NOTE", "SETUP", "HOLDER"),
                    help="MODE: cli or worker; then the waiter command as the next --waiter")
    ap.add_argument("--waiter", action="append", default=[])
    a = ap.parse_args()
    if len(a.case) != len(a.waiter):
        ap.error("one --waiter per --case")
    server = Server(a.server_cmd)
    try:
        for n, (case, waiter) in enumerate(zip(a.case, a.waiter)):
            impl, metric, mode, note, setup, holder = case
            one_case(a, server, n, impl, metric, mode, note, setup, holder, waiter)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
