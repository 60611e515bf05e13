#!/usr/bin/env python3
"""Client instructions per uncontended cycle, counted by valgrind's callgrind.

The floor figures of `lynk-bench floor` are process CPU time (getrusage): on
a 2-core machine shared with the emulator they move by a third between two
runs of the same binary minutes apart, because they include the kernel's
loopback TCP work and the scheduler, which follow the server's latency.
Instruction counts do not: callgrind counts the same total for the same
binary and inputs whatever else the machine does. This script counts them.

For each server and implementation it runs `lynk-bench floor --only IMP
--cycles N` under callgrind twice (N = LOW and HIGH) and divides the
difference by HIGH - LOW: start-up, the SDK's configuration and the
warm-up cancel out, what is left is one cycle's instructions (user space:
the kernel's share is not counted, and it is about the same per request
for every client here).

Valgrind does not emulate the CPU's SHA extensions, so the SDK's SigV4
signing runs SHA-256 in software under it, about ten times the
instructions of the hardware path the machines lynk runs on take. That
weighs the request size (the payload is hashed) far more than a real CPU
does; the figures are printed with and without `sha2::sha256::soft`.

    scripts/bench/instructions.py --moto URL --dynalite URL [--json FILE] [--smoke]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

IMPS = {
    "moto": ["lynk", "floor-lynk", "dynamodb-lease", "floor-dynamodb-lease", "floor-minimal-fenced"],
    "dynalite": ["lynk", "floor-lynk", "floor-dynamodb-lease", "floor-minimal-fenced"],
}
SOFT_SHA = "sha2::sha256::soft"


def count(binary, server, endpoint, imp, cycles, workdir):
    """(total instructions, of which in software SHA-256) for one run."""
    out = os.path.join(workdir, "%s.%s.%d.out" % (server, imp, cycles))
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary, "floor",
           "--server", server, "--endpoint", endpoint, "--only", imp, "--cycles", str(cycles)]
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:
        sys.exit("instructions: %s failed (exit %d):\n%s" % (" ".join(cmd), run.returncode, run.stderr[-2000:]))
    m = re.search(r"Collected : (\d+)", run.stderr)
    if not m:
        sys.exit("instructions: no 'Collected' line from callgrind for %s on %s" % (imp, server))
    total = int(m.group(1))
    ann = subprocess.run(["callgrind_annotate", "--threshold=100", out], capture_output=True, text=True)
    sha = 0
    for line in ann.stdout.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line)
        if m and SOFT_SHA in m.group(2):
            sha += int(m.group(1).replace(",", ""))
    os.remove(out)
    return total, sha


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moto")
    ap.add_argument("--dynalite")
    ap.add_argument("--bin", default="target/release/lynk-bench")
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true", help="fewer cycles (30 and 60)")
    args = ap.parse_args()
    if subprocess.run(["sh", "-c", "command -v valgrind callgrind_annotate"], capture_output=True).returncode:
        sys.exit("instructions: valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
    low, high = (30, 60) if args.smoke else (50, 250)
    imps = IMPS
    if args.smoke:  # CI: the method, on lynk and its floor
        imps = {server: ["lynk", "floor-lynk"] for server in IMPS}
    figures = {}

    def figure(imp, server, metric, value, unit, note):
        print("%-22s %-9s %-34s %14.3f %-12s %s" % (imp, server, metric, value, unit, note))
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"impl": imp, "server": server, "metric": metric, "value": value,
                                    "unit": unit, "note": note}) + "\n")

    with tempfile.TemporaryDirectory(prefix="lynk-instr-") as work:
        for server, endpoint in (("moto", args.moto), ("dynalite", args.dynalite)):
            if not endpoint:
                continue
            for imp in imps[server]:
                t0, s0 = count(args.bin, server, endpoint, imp, low, work)
                t1, s1 = count(args.bin, server, endpoint, imp, high, work)
                per = (t1 - t0) / (high - low)
                per_sha = (s1 - s0) / (high - low)
                figures[(imp, server)] = (per, per - per_sha)
                note = "callgrind, (%d - %d cycles) / %d; uncontended acquire + release" % (high, low, high - low)
                figure(imp, server, "floor_instr_per_cycle", per, "instr", note)
                figure(imp, server, "floor_instr_per_cycle_nosha", per - per_sha, "instr",
                       "the same without software SHA-256 (%.0f per cycle under valgrind)" % per_sha)
            pairs = [("lynk", "floor-lynk", "floor_ratio_instr_cycle", "lynk : the bare SDK sending lynk's requests"),
                     ("dynamodb-lease", "floor-dynamodb-lease", "floor_ratio_instr_cycle",
                      "dynamodb-lease : the bare SDK sending its requests"),
                     ("lynk", "dynamodb-lease", "floor_lynk_vs_peer_instr_cycle", "lynk : dynamodb-lease"),
                     ("lynk", "floor-dynamodb-lease", "floor_lynk_vs_peer_floor_instr_cycle",
                      "lynk : the bare SDK sending dynamodb-lease's requests"),
                     ("floor-lynk", "floor-dynamodb-lease", "floor_floors_instr_cycle",
                      "lynk's requests : dynamodb-lease's requests, both on the bare SDK"),
                     ("floor-minimal-fenced", "dynamodb-lease", "floor_minimal_vs_peer_instr_cycle",
                      "the least requests a fenced, Python-compatible record needs (bare SDK) : dynamodb-lease"),
                     ("floor-minimal-fenced", "floor-dynamodb-lease", "floor_minimal_vs_peer_floor_instr_cycle",
                      "the least requests a fenced, Python-compatible record needs : dynamodb-lease's, both bare SDK"),
                     ("floor-lynk", "floor-minimal-fenced", "floor_lynk_vs_minimal_instr_cycle",
                      "lynk's requests : the least a fenced, Python-compatible record needs, both bare SDK")]
            for a, b, metric, note in pairs:
                if (a, server) in figures and (b, server) in figures:
                    (ta, na), (tb, nb) = figures[(a, server)], figures[(b, server)]
                    figure(a, server, metric, ta / tb, "x", note + ", instructions per cycle")
                    figure(a, server, metric + "_nosha", na / nb, "x", note + ", without software SHA-256")


if __name__ == "__main__":
    main()
