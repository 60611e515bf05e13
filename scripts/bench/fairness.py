#!/usr/bin/env python3
"""Fairness across processes: three waiters behind one holder, in arrival order?

    fairness.py --impl lynk --server moto --rounds 10 [--metric-suffix _wake] [--json F] -- WORKER CMD...

Four worker processes (the protocol of xproc.py): one holder, three
waiters. Each round: the holder acquires; the waiters are told `acquire`
0.6 s apart (`--gap`), in an order that rotates from round to round (so no
process is always first); 0.6 s after the last one, plus a release delay
uniform over [0.5, 2.0) s (stratified over the rounds, as the handover
delays of xproc.py), the holder releases. Each waiter, once it has the lock,
holds it 0.3 s (`--hold`) and releases. The round is in order when the
waiters got the lock in the order they were told to acquire. As in lynk's
own test (crates/lynk-testkit/tests/fair_queue.rs), here with real
processes, a real emulator and real time.

Figure: fairness_in_order_pct (share of rounds in arrival order, in %).
"""
import argparse
import json
import os
import queue
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xproc  # noqa: E402
from xproc import LockLost, Worker  # noqa: E402


def first_acquired(waiters, pending, timeout):
    """Index (into waiters) of the first pending waiter to say `acquired`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in list(pending):
            try:
                line = waiters[i].lines.get_nowait()
            except queue.Empty:
                continue
            if line is None:
                raise SystemExit("worker %d exited (status %s) while waiting for the lock"
                                 % (waiters[i].p.pid, waiters[i].p.poll()))
            parts = line.split()
            if parts and parts[0] == "error":
                if "LockLostError" in line:
                    raise LockLost(line.strip())
                raise SystemExit("worker %d failed: %s" % (waiters[i].p.pid, line.strip()))
            if parts and parts[0] == "acquired":
                return i
        time.sleep(0.002)
    raise SystemExit("no waiter got the lock within %.0f s" % timeout)


def one_round(a, holder, waiters, order, release_delay):
    holder.send("acquire")
    holder.expect("acquired")
    for i in order:
        waiters[i].send("acquire")
        waiters[i].expect("started")
        time.sleep(a.gap)
    time.sleep(release_delay)
    holder.send("release")
    holder.expect("released")
    got, pending = [], set(order)
    while pending:
        i = first_acquired(waiters, pending, xproc.STEP_TIMEOUT)
        got.append(i)
        pending.discard(i)
        time.sleep(a.hold)
        waiters[i].send("release")
        waiters[i].expect("released")
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--gap", type=float, default=0.6, help="seconds between the waiters' arrivals")
    ap.add_argument("--hold", type=float, default=0.3, help="seconds each waiter holds the lock")
    ap.add_argument("--release-min", type=float, default=0.5)
    ap.add_argument("--release-max", type=float, default=2.0)
    ap.add_argument("--note", default="")
    ap.add_argument("--metric-suffix", default="")
    ap.add_argument("--json")
    ap.add_argument("--step-timeout", type=float, default=xproc.STEP_TIMEOUT)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    xproc.STEP_TIMEOUT = a.step_timeout
    n = a.rounds
    delays = [a.release_min + (a.release_max - a.release_min) * (k + random.random()) / n for k in range(n)]
    random.shuffle(delays)
    w = []
    in_order = 0
    try:
        for _ in range(4):
            w.append(Worker(cmd))
        holder, waiters = w[0], w[1:]
        for r, delay in enumerate(delays):
            order = [(r + k) % 3 for k in range(3)]
            got = one_round(a, holder, waiters, order, delay)
            ok = got == order
            in_order += ok
            print("[%s fairness] round %d: arrival %s, got the lock %s%s"
                  % (a.impl, r + 1, order, got, "" if ok else "  (out of order)"), file=sys.stderr, flush=True)
        counters = xproc.metrics(w)
        for x in w:
            x.close()
    except LockLost as e:
        print("[%s] fairness: a worker lost its lock during the measurement (%s); no figure" % (a.impl, e),
              file=sys.stderr, flush=True)
        return 0
    finally:
        for x in w:
            x.kill()
    note = "%d of %d rounds in arrival order; 3 waiter processes %.1f s apart, each holding %.1f s" % (
        in_order, n, a.gap, a.hold)
    if a.note:
        note += ", " + a.note
    if counters:
        note += "; workers' counters: %s" % ", ".join(
            "%s %d" % (k, counters[k]) for k in ("confirmed_grants", "wakeups", "takeovers") if k in counters)
    metric = "fairness_in_order_pct" + a.metric_suffix
    value = 100.0 * in_order / n
    print("%-15s %-9s %-28s %14.3f %-10s %s" % (a.impl, a.server, metric, value, "%", note), flush=True)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"impl": a.impl, "server": a.server, "metric": metric, "value": value,
                                "unit": "%", "note": note}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
