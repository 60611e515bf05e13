#!/usr/bin/env python3
"""Measurements of the original Python lynk 0.3.1 (run with .tools/venv/bin/python).

    pylynk_bench.py suite    --endpoint URL --server moto [--lease 2] [--smoke] [--json FILE]
    pylynk_bench.py handover --endpoint URL --server moto [--lease 20] [--handovers 3] [--json FILE]
    pylynk_bench.py worker   --table T --lock NAME [--lease 20]   # one process of xproc.py / fairness.py / waitcount.py

Requests are counted at botocore (every HTTP request lynk's clients make,
per thread).  AWS_ENDPOINT_URL is set from --endpoint for lynk's boto3
sessions.  The lease is whole seconds (lynk 0.3.1 requires an int).  Its
default, 20 s (``Lock.acquire(lease_duration=20)``), is what its users get:
a waiter sleeps one whole lease per attempt, so a handover takes between 0
and one lease.  ``suite`` runs at 2 s, the shortest practical lease and the
most favourable to the original, so that it takes seconds; ``handover``
measures the in-process handover alone, at the default lease unless told
otherwise.  Figures measured at a lease other than the default carry the
suffix ``_lease<N>s`` in their metric name.
"""
import argparse
import json
import os
import random
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylynk"))
import pylynk_shim  # noqa: E402

pylynk_shim.install()
pylynk_shim.patch_now()

import botocore.client  # noqa: E402
from lynk.exceptions import LockLostError  # noqa: E402

_counts = {}
_counts_lock = threading.Lock()


def _count_key():
    from lynk.refresh import LockRefresher

    t = threading.current_thread()
    return "refresher" if isinstance(t, LockRefresher) else t.ident


_orig = botocore.client.BaseClient._make_request


def _counting(self, operation_model, request_dict, request_context):
    k = _count_key()
    with _counts_lock:
        _counts[k] = _counts.get(k, 0) + 1
    return _orig(self, operation_model, request_dict, request_context)


botocore.client.BaseClient._make_request = _counting


def count(key=None):
    if key is None:
        key = threading.get_ident()
    with _counts_lock:
        return _counts.get(key, 0)


class Report:
    def __init__(self, path, server):
        self.path, self.server = path, server

    def figure(self, metric, value, unit, note):
        print("%-15s %-9s %-28s %14.3f %-10s %s" % ("python-lynk", self.server, metric, value, unit, note),
              flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps({"impl": "python-lynk", "server": self.server, "metric": metric,
                                    "value": value, "unit": unit, "note": note}) + "\n")


def session(table, host="bench"):
    import lynk

    return lynk.get_session(table, host_identifier=host)


def create_table(endpoint, table):
    import boto3

    c = boto3.client("dynamodb", endpoint_url=endpoint)
    c.create_table(TableName=table,
                   AttributeDefinitions=[{"AttributeName": "lockKey", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "lockKey", "KeyType": "HASH"}],
                   BillingMode="PAY_PER_REQUEST")
    c.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


DEFAULT_LEASE = 20  # lynk 0.3.1: Lock.acquire(lease_duration=20)


def lease_suffix(lease):
    """Metric-name suffix for a figure measured at a non-default lease."""
    return "" if lease == DEFAULT_LEASE else "_lease%ds" % lease


def stratified(n, lo, hi):
    """n release delays, one uniform draw in each of n equal slices of
    [lo, hi), shuffled: still uniform over [lo, hi) each, but a sample of 3
    already spans the range (a plain uniform sample of 3 may not)."""
    d = [lo + (hi - lo) * (k + random.random()) / n for k in range(n)]
    random.shuffle(d)
    return d


def p50_p99(samples):
    s = sorted(samples)
    if not s:
        return float("nan"), float("nan")

    def rank(p):
        i = min(max(int(-(-p * len(s) // 1)), 1), len(s)) - 1
        return s[i]

    return rank(0.5), rank(0.99)


def suite(args):
    os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    r = Report(args.json, args.server)
    L = args.lease
    table = "pylynk-bench-" + uuid.uuid4().hex[:10]
    create_table(args.endpoint, table)
    sess_a, sess_b = session(table, "A"), session(table, "B")

    # Requests: uncontended cycle.
    lock = sess_a.create_lock("req-cycle")
    lock.acquire(lease_duration=L)
    lock.release()
    c0 = count()
    for _ in range(10):
        lock.acquire(lease_duration=L)
        lock.release()
    r.figure("req_cycle", (count() - c0) / 10, "req", "uncontended acquire + release")

    # Contended try (max_wait_seconds=0) and contended acquire through a 1.5 s hold.
    held = sess_a.create_lock("req-contended")
    held.acquire(lease_duration=L)
    other = sess_b.create_lock("req-contended")
    c0 = count()
    try:
        other.acquire(lease_duration=L, max_wait_seconds=0)
        other.release()
    except Exception:
        pass
    r.figure("req_contended_try", count() - c0, "req", "acquire(max_wait_seconds=0) on a held lock")
    box = {}

    def wait_acquire():
        c = count()
        other.acquire(lease_duration=L)
        box["n"] = count() - c

    t = threading.Thread(target=wait_acquire)
    t.start()
    time.sleep(1.5)
    held.release()
    t.join()
    other.release()
    r.figure("req_contended_acquire", box["n"], "req",
             "acquire waiting through a 1.5 s hold by another client (lease %d s)" % L)

    # Per held lock / per waiting client per minute.
    W = args.window
    held = sess_a.create_lock("per-minute")
    held.acquire(lease_duration=L)
    h0 = count("refresher")
    waiter = sess_b.create_lock("per-minute")
    box = {}

    def waiting():
        box["ident"] = threading.get_ident()
        box["c0"] = count()  # thread idents are reused: count from here
        try:
            waiter.acquire(lease_duration=L, max_wait_seconds=W + 3 * L)
            box["got"] = True
        except Exception:
            pass

    t = threading.Thread(target=waiting, daemon=True)
    t.start()
    time.sleep(W)
    held_n = count("refresher") - h0
    wait_n = count(box["ident"]) - box["c0"]
    per_min = 60.0 / W
    scale = L / 20.0
    note = "counted over %.1f s at lease %d s" % (W, L)
    r.figure("req_held_per_min_at_lease", held_n * per_min, "req/min", note)
    r.figure("req_wait_per_min_at_lease", wait_n * per_min, "req/min", note)
    r.figure("req_held_per_min", held_n * per_min * scale, "req/min",
             note + ", scaled to the default 20 s lease (refresh every 0.75 lease)")
    r.figure("req_wait_per_min", wait_n * per_min * scale, "req/min",
             note + ", scaled to the default 20 s lease (one Put + one Get per lease)")
    held.release()
    t.join()
    if box.get("got"):
        waiter.release()

    handover_inproc(r, table, L, args.handovers)

    # Throughput and CPU per cycle (default lease 20 s: no refresh inside a cycle).
    lock = sess_a.create_lock("one-lock")
    lock.acquire()
    lock.release()
    n = args.cycles
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        lock.acquire()
        lock.release()
    el, cpu = time.perf_counter() - t0, time.process_time() - c0
    r.figure("cycles_per_s_one_lock", n / el, "cycles/s", "emulator-bound; %d sequential acquire+release" % n)
    r.figure("cpu_us_per_cycle", cpu * 1e6 / n, "us", "client process CPU (user+sys) per cycle, one lock")

    threads_n, per = args.many_locks, args.cycles_per_lock
    many = [session(table, "M%d" % i).create_lock("many-%d" % i) for i in range(threads_n)]

    def cycle(lk):
        for _ in range(per):
            lk.acquire()
            lk.release()

    ts = [threading.Thread(target=cycle, args=(lk,)) for lk in many]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el, cpu = time.perf_counter() - t0, time.process_time() - c0
    r.figure("cycles_per_s_many_locks", threads_n * per / el, "cycles/s",
             "emulator-bound; %d locks in %d threads, one process" % (threads_n, threads_n))
    r.figure("cpu_us_per_cycle_many", cpu * 1e6 / (threads_n * per), "us", "client process CPU per cycle, many locks")


def handover_inproc(r, table, L, n):
    """In-process handover as in the original's quickstart: one session (one
    backend factory), two threads, each with its own lock object of the same
    name.  The waiter is started, and the holder releases after a delay
    uniform over [0.05, L + 0.05) s (the waiter's first sleep, which begins
    after its failed put and get); latency = the waiter's acquire returning
    - the release starting."""
    sess = session(table, "quickstart")
    samples = []
    locks = [sess.create_lock("handover"), sess.create_lock("handover")]
    locks[0].acquire(lease_duration=L)
    h = 0
    for delay in stratified(n, 0.05, L + 0.05):
        w = 1 - h
        box = {}

        def take(w=w, box=box):
            locks[w].acquire(lease_duration=L)
            box["t"] = time.time()

        t = threading.Thread(target=take)
        t.start()
        time.sleep(delay)
        tr = time.time()
        try:
            locks[h].release()
        except LockLostError:
            lost_lock_note("handover_inproc", L)
            return
        t.join()
        samples.append((box["t"] - tr) * 1e3)
        h = w
    locks[h].release()
    p50, p99 = p50_p99(samples)
    default = " (its default)" if L == DEFAULT_LEASE else " (not its default of %d s)" % DEFAULT_LEASE
    note = "%d handovers between two threads, one session; lease %d s%s; release uniform over the waiter's sleep" % (
        len(samples), L, default)
    r.figure("handover_inproc_p50_ms" + lease_suffix(L), p50, "ms", note)
    r.figure("handover_inproc_p99_ms" + lease_suffix(L), p99, "ms", note)


def lost_lock_note(what, lease):
    """The original lost its lock while measuring: its refresher runs every
    3/4 of a lease with no deadline, so on a busy machine at a short lease a
    late refresh lets the waiter take over.  That is the original's
    behaviour, not a benchmark failure: say so and leave the figure out."""
    print("[python-lynk] %s: lost its lock during the measurement (a refresh came later than its "
          "%d s lease on this busy machine, and the waiter took over); no figure" % (what, lease),
          file=sys.stderr, flush=True)


def handover(args):
    os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    table = "pylynk-bench-" + uuid.uuid4().hex[:10]
    create_table(args.endpoint, table)
    handover_inproc(Report(args.json, args.server), table, args.lease, args.handovers)


def worker(args):
    if args.endpoint:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    lock = session(args.table, "W%d" % os.getpid()).create_lock(args.lock)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        try:
            if cmd == "acquire":
                print("started %d" % int(time.time() * 1e6), flush=True)
                lock.acquire(lease_duration=args.lease)
                print("acquired %d" % int(time.time() * 1e6), flush=True)
            elif cmd == "release":
                print("releasing %d" % int(time.time() * 1e6), flush=True)
                lock.release()
                print("released", flush=True)
            elif cmd == "metrics":
                print("metrics", flush=True)  # no client counters in the original
            else:
                break
        except Exception as e:  # e.g. LockLostError: a late refresh let the other worker take over
            print("error %s: %s" % (type(e).__name__, e), flush=True)
            raise


def main():
    """Runs one command and ends the process with its status, whatever threads
    are left: lynk 0.3.1's refresher is a non-daemon thread, so a process
    whose lock was lost or never released would otherwise never exit (the
    gap lynk closes), and a benchmark waiting for it would hang."""
    try:
        run()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--server", default="moto")
    s.add_argument("--lease", type=int, default=2)
    s.add_argument("--json")
    s.add_argument("--smoke", action="store_true")
    h = sub.add_parser("handover")
    h.add_argument("--endpoint", required=True)
    h.add_argument("--server", default="moto")
    h.add_argument("--lease", type=int, default=DEFAULT_LEASE)
    h.add_argument("--handovers", type=int, default=3)
    h.add_argument("--json")
    w = sub.add_parser("worker")
    w.add_argument("--endpoint")
    w.add_argument("--table", required=True)
    w.add_argument("--lock", default="xproc")
    w.add_argument("--lease", type=int, default=DEFAULT_LEASE)
    args = p.parse_args()
    if args.cmd == "suite":
        if args.smoke:
            args.window, args.handovers, args.cycles, args.many_locks, args.cycles_per_lock = 2.5, 1, 10, 2, 3
        else:
            args.window, args.handovers, args.cycles, args.many_locks, args.cycles_per_lock = 8.0, 6, 150, 8, 15
        suite(args)
    elif args.cmd == "handover":
        handover(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
