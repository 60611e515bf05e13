#!/usr/bin/env python3
"""Prints the figures of one bench run (JSON lines) as one table, and the
ratios to the original Python lynk against the issue's targets.

    report.py RESULTS.jsonl [--markdown] [--smoke]

The targets compare with the original at its default settings (lease 20 s,
what its users get): plain metric names. Figures of the original measured at
another lease carry a `_lease<N>s` suffix (the 2 s lease, its best case) and
get their own rows and their own, secondary, ratios. lynk's figures with
wake-ups on carry the suffix `_wake`.
"""
import json
import re
import sys

ORDER = [
    "req_cycle", "req_contended_try", "req_contended_acquire", "req_local_handover",
    "req_held_per_min", "req_held_per_min_hb", "req_held_per_min_at_lease",
    "req_wait_per_min", "req_wait_per_min_at_lease",
    "handover_inproc_p50_ms", "handover_inproc_p99_ms", "handover_xproc_p50_ms", "handover_xproc_p99_ms",
    "handover_short_p50_ms", "handover_short_p99_ms", "req_per_wait_s_server", "fairness_in_order_pct",
    "cycles_per_s_one_lock", "cycles_per_s_many_locks", "cpu_us_per_cycle", "cpu_us_per_cycle_many",
    "scale_locks_held", "scale_acquire_per_s", "scale_bytes_per_lock", "scale_heartbeats",
    "scale_hb_cpu_us", "scale_max_hb_lag_ms", "scale_lost_leases",
]
COLS = [("lynk", "memory"), ("lynk", "dynalite"), ("lynk", "moto"),
        ("python-lynk", "dynalite"), ("python-lynk", "moto"), ("dynamodb-lease", "moto")]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100 or v == int(v):
        return "{:,.0f}".format(v)
    return "{:.3g}".format(v)


def main():
    path = sys.argv[1]
    md = "--markdown" in sys.argv
    smoke = "--smoke" in sys.argv
    data, units = {}, {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        data[(r["impl"], r["server"], r["metric"])] = r["value"]
        units[r["metric"]] = r["unit"]
    # A figure at a non-default lease, or with wake-ups, goes right after its default row.
    order = []
    for m in ORDER:
        order.append(m)
        order += sorted({k[2] for k in data if re.fullmatch(re.escape(m) + r"(_lease\d+s|_wake|_lib|_lib_wake)", k[2])})
    cols = [c for c in COLS if any((c[0], c[1], m) in data for m in order)]
    metrics = [m for m in order if any((c[0], c[1], m) in data for c in cols)]
    head = ["figure", "unit"] + ["%s %s" % c for c in cols]
    rows = [[m, units[m]] + [fmt(data.get((c[0], c[1], m))) for c in cols] for m in metrics]
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        for r in [head] + rows:
            print("  ".join(str(x).rjust(w[i]) if i > 1 else str(x).ljust(w[i]) for i, x in enumerate(r)))

    print()
    if smoke:
        print("(smoke run: tiny counts and short leases; the ratios below are not meaningful)")
    print("Targets: ratio lynk : the original at its default settings (lease 20 s; what the targets mean),")
    print("same server, same run:")
    g = lambda i, s, m: data.get((i, s, m))
    targets = [
        ("uncontended cycles/s", "cycles_per_s_one_lock", True, 5),
        ("in-process handover (median)", "handover_inproc_p50_ms", False, 100),
        ("cross-process handover (median)", "handover_xproc_p50_ms", False, 10),
        ("client CPU per cycle", "cpu_us_per_cycle", False, 20),
    ]

    def ratio(server, m, higher_better, suffix=""):
        a, b = g("lynk", server, m), g("python-lynk", server, m + suffix)
        if not a or not b:
            return None
        return a / b if higher_better else b / a

    for server in ("moto", "dynalite"):
        has_original = any(k[0] == "python-lynk" and k[1] == server for k in data)
        for label, m, higher_better, want in targets if has_original else []:
            r = ratio(server, m, higher_better)
            if r is None:
                if g("lynk", server, m) is not None:
                    print("  %-9s %-34s %9s        (target >= %gx)  not measured" % (server, label, "-", want))
                continue
            print("  %-9s %-34s %8.1fx        (target >= %gx)  %s" % (
                server, label, r, want, "met" if r >= want else "MISSED"))
        w = g("lynk", server, "req_wait_per_min")
        if w is not None:
            print("  %-9s %-34s %8.2f req/s  (target <= 1)    %s" % (
                server, "waiting client req/s (default)", w / 60.0, "met" if w / 60.0 <= 1.0 + 1e-9 else "MISSED"))

    lease = sorted({re.search(r"_lease\d+s$", k[2]).group(0) for k in data
                    if k[0] == "python-lynk" and k[2].startswith("handover_") and re.search(r"_lease\d+s$", k[2])})
    for suffix in lease:
        print()
        n = suffix[6:-1]
        print("The handovers against the original at lease %s s (not its default%s;" % (
            n, "; the shortest practical lease, its best case" if n == "2" else ""))
        print("cycles/s and CPU per cycle do not depend on the lease; for comparison, not the targets' basis):")
        for server in ("moto", "dynalite"):
            for label, m, higher_better, want in targets:
                if not m.startswith("handover_"):
                    continue
                r = ratio(server, m, higher_better, suffix)
                if r is not None:
                    print("  %-9s %-34s %8.1fx        (target >= %gx would be %s)" % (
                        server, label, r, want, "met" if r >= want else "missed"))
    print()
    print("Issue 12 goals (lynk; none asserted):")
    goals = [
        ("short critical section handover p50, defaults", "handover_short_p50_ms", 150, "ms"),
        ("short critical section handover p50, wake-ups", "handover_short_p50_ms_wake", 20, "ms"),
        ("requests per waiting second (server), defaults", "req_per_wait_s_server", 1, "req/s"),
        ("requests per waiting second (server), wake-ups", "req_per_wait_s_server_wake", 1, "req/s"),
        ("  the same, library (lynk-bench worker), defaults", "req_per_wait_s_server_lib", 1, "req/s"),
        ("  the same, library (lynk-bench worker), wake-ups", "req_per_wait_s_server_lib_wake", 1, "req/s"),
    ]
    for server in ("moto", "dynalite"):
        for label, m, limit, unit in goals:
            v = g("lynk", server, m)
            if v is not None:
                lim = "< %g" % limit if m.endswith("_wake") and unit == "ms" else "<= %g" % limit
                ok = v < limit if lim.startswith("<") and not lim.startswith("<=") else v <= limit
                print("  %-9s %-48s %9.3g %-5s (goal %s %s)  %s" % (
                    server, label, v, unit, lim, unit, "met" if ok else "MISSED"))
        for suffix, label in (("", "defaults"), ("_wake", "wake-ups")):
            v = g("lynk", server, "fairness_in_order_pct" + suffix)
            if v is not None:
                print("  %-9s %-48s %9.3g %%" % (server, "rounds in arrival order, " + label, v))
    print()
    print("lynk : dynamodb-lease on moto:")
    for label, m, higher_better, _ in targets:
        a, b = g("lynk", "moto", m), g("dynamodb-lease", "moto", m)
        if a and b:
            print("  %-34s %8.1fx" % (label, a / b if higher_better else b / a))


if __name__ == "__main__":
    main()
