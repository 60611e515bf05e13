#!/usr/bin/env python3
"""Cross-process handover: drives two worker processes that take turns on one lock.

    xproc.py --impl lynk --server moto --rounds 10 --dmin 0.1 --dmax 1.1 \
             [--metric-suffix _lease2s] [--json F] -- WORKER CMD...
    xproc.py --mode short --impl lynk --server moto --rounds 10 [--work 0.3 --waiter-after 0.1] ...

Each round: the waiter is told `acquire` (it starts waiting), after a random
delay uniform in [dmin, dmax) s the holder is told `release`; the latency is
the waiter's `acquired` wall time minus the holder's `releasing` wall time
(both processes on this host, so one wall clock). Roles then swap. Choose
dmax - dmin as the waiter's polling period, so releases fall uniformly over
its poll phase. The delays are stratified: one uniform draw in each of
`rounds` equal slices of [dmin, dmax), in random order, so that even 3
rounds span the poll phase.

`--mode short` (figures `handover_short_*`): a short critical section, as
in issue 12 and lynk's own test (crates/lynk-testkit/tests/fair_queue.rs).
Each round the holder acquires the free lock; it works `--work` s (0.3) from
the moment the driver hears its `acquired`; the waiter is told `acquire`
`--waiter-after` s (0.1) after that moment; the holder is told `release` at
`--work`. The latency is measured as above; the waiter then releases at
once, and the next round, roles swapped, starts `--pause` s (1.0) later.
The rounds are independent: back to back (each process waiting every
0.7 s or so), lynk's wake-up rate limit (per lock: two at once, then one per
poll interval) drops some wake-ups, which is a property of that loop, not of
one short critical section.

At the end each worker is asked `metrics` (lynk's client counters: grants,
confirmed grants, wake-ups received); their sums go into the note.
"""
import argparse
import json
import queue
import random
import subprocess
import sys
import threading
import time

# How long one step (a worker's answer to one command) may take before the
# run is abandoned: a worker that never answers (the original's lock lost to
# a late refresh, its refresher thread keeping the process alive) must not
# hang the benchmark.  Set with --step-timeout.
STEP_TIMEOUT = 120.0


class LockLost(Exception):
    """A worker's lock was taken over while it held it (the original's late
    refresh at a short lease on a busy machine): its behaviour, no figure."""


class Worker:
    def __init__(self, cmd, env=None):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready")

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def expect(self, word):
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise SystemExit("worker %d did not answer %r within %.0f s (see its stderr above)"
                                 % (self.p.pid, word, STEP_TIMEOUT))
            if line is None:
                raise SystemExit("worker %d exited (status %s) while waiting for %r"
                                 % (self.p.pid, self.p.poll(), word))
            parts = line.split()
            if parts and parts[0] == "error" and "LockLostError" in line:
                raise LockLost(line.strip())
            if parts and parts[0] == "error":
                raise SystemExit("worker %d failed while waiting for %r: %s" % (self.p.pid, word, line.strip()))
            if parts and parts[0] == word:
                if word == "metrics":
                    return parts[1:]
                return int(parts[1]) if len(parts) > 1 else None

    def close(self):
        try:
            self.send("quit")
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def main():
    global STEP_TIMEOUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--dmin", type=float, default=0.1)
    ap.add_argument("--dmax", type=float, default=1.1)
    ap.add_argument("--note", default="")
    ap.add_argument("--metric-suffix", default="", help="e.g. _lease2s for a non-default setting, _wake")
    ap.add_argument("--mode", choices=("random", "short"), default="random",
                    help="random: release at a random moment of the waiter's poll phase; "
                         "short: a --work s critical section, the waiter started --waiter-after s into it")
    ap.add_argument("--work", type=float, default=0.3)
    ap.add_argument("--waiter-after", type=float, default=0.1)
    ap.add_argument("--pause", type=float, default=1.0, help="short mode: idle seconds between rounds")
    ap.add_argument("--json")
    ap.add_argument("--step-timeout", type=float, default=STEP_TIMEOUT,
                    help="seconds one worker answer may take before the run is abandoned")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    STEP_TIMEOUT = a.step_timeout
    w = []
    try:
        w.append(Worker(cmd))
        w.append(Worker(cmd))
        samples = (measure_short if a.mode == "short" else measure)(a, w)
        counters = metrics(w)
        for x in w:
            x.close()
    except LockLost as e:
        print("[%s] cross-process handover: a worker lost its lock during the measurement (%s); no figure"
              % (a.impl, e), file=sys.stderr, flush=True)
        return 0
    finally:
        for x in w:
            x.kill()
    report(a, samples, counters)


def metrics(w):
    """Sums the workers' `metrics key=value` answers (lynk's counters; the
    peer and the original answer with none)."""
    total = {}
    for x in w:
        x.send("metrics")
        for kv in x.expect("metrics"):
            k, _, v = kv.partition("=")
            total[k] = total.get(k, 0) + int(v)
    return total


def measure_short(a, w):
    samples = []

    def until(t):
        time.sleep(max(t - time.monotonic(), 0))

    for k in range(a.rounds):
        holder, waiter = k % 2, 1 - k % 2
        if k:
            time.sleep(a.pause)
        w[holder].send("acquire")
        w[holder].expect("acquired")
        t_hold = time.monotonic()
        until(t_hold + a.waiter_after)
        w[waiter].send("acquire")
        w[waiter].expect("started")
        until(t_hold + a.work)
        w[holder].send("release")
        t_rel = w[holder].expect("releasing")
        w[holder].expect("released")
        t_acq = w[waiter].expect("acquired")
        samples.append((t_acq - t_rel) / 1e3)
        w[waiter].send("release")
        w[waiter].expect("released")
    return samples


def measure(a, w):
    holder = 0
    w[0].send("acquire")
    w[0].expect("acquired")
    samples = []
    delays = [a.dmin + (a.dmax - a.dmin) * (k + random.random()) / a.rounds for k in range(a.rounds)]
    random.shuffle(delays)
    for delay in delays:
        waiter = 1 - holder
        w[waiter].send("acquire")
        w[waiter].expect("started")
        time.sleep(delay)
        w[holder].send("release")
        t_rel = w[holder].expect("releasing")
        w[holder].expect("released")
        t_acq = w[waiter].expect("acquired")
        samples.append((t_acq - t_rel) / 1e3)
        holder = waiter
    w[holder].send("release")
    w[holder].expect("released")
    return samples


def report(a, samples, counters):
    s = sorted(samples)

    def rank(p):
        i = min(max(int(-(-p * len(s) // 1)), 1), len(s)) - 1
        return s[i]

    note = "%d handovers between two processes%s" % (len(s), (", " + a.note) if a.note else "")
    if a.mode == "short":
        note += "; holder works %.1f s, waiter started %.1f s after it acquired, rounds %.1f s apart" % (
            a.work, a.waiter_after, a.pause)
    if counters:
        note += "; workers' counters: %s" % ", ".join(
            "%s %d" % (k, counters[k]) for k in ("confirmed_grants", "wakeups", "takeovers") if k in counters)
    base = "handover_short" if a.mode == "short" else "handover_xproc"
    for metric, value in ((base + "_p50_ms", rank(0.5)), (base + "_p99_ms", rank(0.99))):
        metric += a.metric_suffix
        print("%-15s %-9s %-28s %14.3f %-10s %s" % (a.impl, a.server, metric, value, "ms", note), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps({"impl": a.impl, "server": a.server, "metric": metric, "value": value,
                                    "unit": "ms", "note": note}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
