#!/usr/bin/env python3
"""Prints the figures of one bench run (JSON lines) as one table, and the
ratios to the original Python lynk against the issue's targets.

    report.py RESULTS.jsonl [--markdown] [--smoke] [--cost]

`--cost` prints only the cost section (issue 14: `lynk-bench cost`), whose
prices are the constants USD_PER_MILLION_* below.

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

# On-demand prices, the one place they are written down (docs/benchmarks.md, "Cost in money"):
# US East (N. Virginia), DynamoDB Standard table class, per million request units, as
# published since the 2024-11-01 on-demand price cut; checked 2026-12-02. A month is 730 h.
PRICE_REGION = "us-east-1"
PRICE_DATE = "2026-12-02"
USD_PER_MILLION_WRU = 0.625
USD_PER_MILLION_RRU = 0.125
HOURS_PER_MONTH = 730
# The cost table's rows: (impl, server, metric suffix, label).
COST_ROWS = [
    ("lynk", "memory", "", "lynk, defaults (lease 20 s, poll 1.5 s)"),
    ("lynk", "memory", "_recommended", "lynk, recommended for cost (lease 60 s, poll 5 s, wake-ups)"),
    ("python-lynk", "computed", "", "original lynk 0.3.1, defaults (lease 20 s)"),
    ("java-lock-client", "computed", "", "AWS Java lock client, defaults (lease 20 s, heartbeat 5 s, refresh 1 s)"),
    ("dynamodb-lease", "computed", "", "dynamodb-lease 0.22, defaults (ttl 60 s, extend 30 s, retry 1 s)"),
]
COST_KNOBS = [
    ("", "defaults"),
    ("_lease60", "lease 60 s"),
    ("_lease120", "lease 120 s"),
    ("_hb_half", "heartbeat every lease/2"),
    ("_poll1s", "poll_interval 1 s"),
    ("_poll5s", "poll_interval 5 s"),
    ("_wake", "wake-ups on"),
    ("_recommended", "recommended: lease 60 s, poll 5 s, wake-ups"),
]


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
    if "--cost" in sys.argv:  # the cost section alone
        cost_section(data, md)
        return
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
    # (Issue 14 replaced "uncontended cycles/s >= 5x the original", which compares
    # emulators, not clients, by the floor targets below.)
    targets = [
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
    floor_section(data)
    cost_section(data, md)


def verdict(v, want):
    """'(target <= 1.15x)  met' for a ratio `v` against `want` (1.0: strictly below); '' without one."""
    if want is None:
        return ""
    ok = v < want if want == 1.0 else v <= want
    return "(target %s %.2fx)  %s" % ("<" if want == 1.0 else "<=", want, "met" if ok else "MISSED")


def floor_section(data):
    """Issue 14: each client against the bare SDK sending the same requests (`lynk-bench floor`)."""
    g = lambda i, s, m: data.get((i, s, m))
    if not any(k[2].startswith("floor_") for k in data):
        return
    print()
    print("Floor (issue 14): client : the bare SDK sending the same requests, same server, same run,")
    print("interleaved rounds (lynk-bench floor; '-mt': on tokio's multi-thread runtime):")
    for server in ("moto", "dynalite", "moto-mt", "dynalite-mt"):
        rows = [
            ("lynk CPU per cycle : floor", g("lynk", server, "floor_ratio_cpu_cycle"), 1.15),
            ("lynk cycle time : floor (2 requests)", g("lynk", server, "floor_ratio_wall_cycle"), 1.05),
            ("lynk CPU per read : floor", g("lynk", server, "floor_ratio_cpu_read"), 1.15),
            ("dynamodb-lease CPU per cycle : its floor", g("dynamodb-lease", server, "floor_ratio_cpu_cycle"), None),
            ("dynamodb-lease cycle time : its floor", g("dynamodb-lease", server, "floor_ratio_wall_cycle"), None),
            ("lynk : dynamodb-lease, CPU per cycle", g("lynk", server, "floor_lynk_vs_peer_cpu_cycle"), 1.0),
            ("lynk : dynamodb-lease's floor, CPU per cycle", g("lynk", server, "floor_lynk_vs_peer_floor_cpu_cycle"), None),
            ("candidate ReturnValues=NONE : lynk's floor, CPU", g("floor-lynk-return-none", server, "floor_ratio_cpu_cycle"), None),
            ("per-request customize() : lynk's floor, CPU", g("floor-lynk-customize", server, "floor_ratio_cpu_cycle"), None),
            ("least fenced requests : dynamodb-lease, CPU", g("floor-minimal-fenced", server, "floor_minimal_vs_peer_cpu_cycle"), None),
            ("least fenced requests : dynamodb-lease's floor", g("floor-minimal-fenced", server, "floor_minimal_vs_peer_floor_cpu_cycle"), None),
        ]
        for label, v, want in rows:
            if v is None:
                continue
            print("  %-9s %-48s %6.3fx  %s" % (server, label, v, verdict(v, want)))
        for imp in ("lynk", "floor-lynk", "dynamodb-lease", "floor-dynamodb-lease", "floor-minimal-fenced"):
            c, w = g(imp, server, "floor_cpu_us_per_cycle"), g(imp, server, "floor_wall_us_per_cycle")
            if c is not None:
                print("  %-9s   %-46s %8.0f us CPU  %8.0f us elapsed per cycle" % (server, imp, c, w))
    instructions_section(data)


def instructions_section(data):
    """Issue 14: the same comparison in instructions per cycle (scripts/bench/instructions.py)."""
    g = lambda i, s, m: data.get((i, s, m))
    if not any(k[2].startswith("floor_instr") for k in data):
        return
    print()
    print("Instructions per uncontended cycle (callgrind: repeatable; 'no SHA' leaves out SigV4's SHA-256,")
    print("which valgrind runs in software and real CPUs in hardware):")
    for server in ("moto", "dynalite"):
        for imp in ("lynk", "floor-lynk", "dynamodb-lease", "floor-dynamodb-lease", "floor-minimal-fenced"):
            t, n = g(imp, server, "floor_instr_per_cycle"), g(imp, server, "floor_instr_per_cycle_nosha")
            if t is not None:
                print("  %-9s   %-46s %10.0f  (no SHA %10.0f)" % (server, imp, t, n))
        rows = [
            ("lynk : floor", "lynk", "floor_ratio_instr_cycle", 1.15),
            ("dynamodb-lease : its floor", "dynamodb-lease", "floor_ratio_instr_cycle", None),
            ("lynk : dynamodb-lease", "lynk", "floor_lynk_vs_peer_instr_cycle", 1.0),
            ("lynk : dynamodb-lease's floor", "lynk", "floor_lynk_vs_peer_floor_instr_cycle", None),
            ("lynk's requests : dynamodb-lease's (both bare SDK)", "floor-lynk", "floor_floors_instr_cycle", None),
            ("least fenced requests (bare SDK) : dynamodb-lease", "floor-minimal-fenced", "floor_minimal_vs_peer_instr_cycle", None),
            ("least fenced requests : dynamodb-lease's (both bare SDK)", "floor-minimal-fenced", "floor_minimal_vs_peer_floor_instr_cycle", None),
            ("lynk's requests : the least fenced ones (both bare SDK)", "floor-lynk", "floor_lynk_vs_minimal_instr_cycle", None),
        ]
        for label, imp, metric, want in rows:
            for sfx, what in (("", ""), ("_nosha", ", no SHA")):
                v = g(imp, server, metric + sfx)
                if v is None:
                    continue
                print("  %-9s %-58s %6.3fx  %s" % (server, label + what, v, verdict(v, want)))


def usd(wru, rru):
    """Dollars for `wru` write and `rru` read request units."""
    return (wru * USD_PER_MILLION_WRU + rru * USD_PER_MILLION_RRU) / 1e6


def cost_section(data, md):
    """Requests and units per hour held and waiting, and what they come to on demand."""
    g = lambda i, s, m: data.get((i, s, m))
    if g("lynk", "memory", "cost_held_wru_per_h") is None:
        return
    print()
    print("Cost in money (issue 14): per held lock and per waiting client, per hour; on-demand at "
          "$%g per million WRU, $%g per million RRU (%s, checked %s), %d h a month." % (
              USD_PER_MILLION_WRU, USD_PER_MILLION_RRU, PRICE_REGION, PRICE_DATE, HOURS_PER_MONTH))
    print("lynk: counted (1 h of paused time, in-memory backend); the others: computed from their defaults.")
    head = ["client, settings", "how", "held req/h (R+W)", "held RRU+WRU/h", "$ / 1,000 locks-month",
            "waiting req/h (R+W)", "waiting RRU+WRU/h", "$ / waiting client-month"]
    rows = []
    for imp, server, sfx, label in COST_ROWS:
        v = {k: g(imp, server, "cost_%s_per_h%s" % (k, sfx)) for k in (
            "held_reads", "held_writes", "held_rru", "held_wru", "wait_reads", "wait_writes", "wait_rru", "wait_wru")}
        if any(x is None for x in v.values()):
            continue
        held = usd(v["held_wru"], v["held_rru"]) * HOURS_PER_MONTH * 1000
        wait = usd(v["wait_wru"], v["wait_rru"]) * HOURS_PER_MONTH
        rows.append([label, "counted" if server == "memory" else "computed",
                     "%s+%s" % (fmt(v["held_reads"]), fmt(v["held_writes"])),
                     "%s+%s" % (fmt(v["held_rru"]), fmt(v["held_wru"])), "$%.2f" % held,
                     "%s+%s" % (fmt(v["wait_reads"]), fmt(v["wait_writes"])),
                     "%s+%s" % (fmt(v["wait_rru"]), fmt(v["wait_wru"])), "$%.3f" % wait])
    table(head, rows, md)
    b = g("lynk", "memory", "cost_item_bytes")
    e = g("lynk", "memory", "cost_item_bytes_per_queue_entry")
    if b is not None and e:
        print("lynk's lock item: about %d B with one queue entry (%d B per queued process): 1 unit per request;"
              " a write costs 2 WRU from about %d queued processes on (1024 B)." % (b, e, (1024 - b) // e + 2))
    print()
    print("Knobs (lynk, counted; one changed at a time from the defaults):")
    head = ["setting", "held WRU/h", "$ / 1,000 locks-month", "waiting RRU+WRU/h", "$ / waiting client-month"]
    rows = []
    for sfx, label in COST_KNOBS:
        hw, hr = g("lynk", "memory", "cost_held_wru_per_h" + sfx), g("lynk", "memory", "cost_held_rru_per_h" + sfx)
        wr, ww = g("lynk", "memory", "cost_wait_rru_per_h" + sfx), g("lynk", "memory", "cost_wait_wru_per_h" + sfx)
        if None in (hw, hr, wr, ww):
            continue
        rows.append([label, fmt(hw), "$%.2f" % (usd(hw, hr) * HOURS_PER_MONTH * 1000),
                     "%s+%s" % (fmt(wr), fmt(ww)), "$%.3f" % (usd(ww, wr) * HOURS_PER_MONTH)])
    table(head, rows, md)
    checks = [(i, m) for i in ("lynk", "python-lynk", "dynamodb-lease")
              for m in ("req_per_wait_s_server",) if g(i, "moto", m) is not None]
    if checks:
        print()
        print("Cross-check: requests per waiting second counted at the server in this run (moto, a 10 s wait"
              " from the first attempt, so above the steady rate for lynk and the original), x 3600:")
        for i, m in checks:
            print("  %-15s %6.2f req/s  ~ %s req/h" % (i, g(i, "moto", m), fmt(g(i, "moto", m) * 3600)))


def table(head, rows, md):
    if md:
        print()
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print()
        return
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for r in [head] + rows:
        print("  ".join(str(x).rjust(w[i]) if i > 0 else str(x).ljust(w[i]) for i, x in enumerate(r)))


if __name__ == "__main__":
    main()
