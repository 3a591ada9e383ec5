#!/usr/bin/env python3
"""Resident memory and CPU of loopspy's long-running modes over a long run.

    benches/long_run.py [--python PATH] [--rate 100] [--minutes 60] [--every 10] [--modes record,top,serve]

Builds loopspy (release), starts benches/targets/long_service.py (about 200 requests a second,
each a task with a new default name, blocking the loop about 3 times a second) and runs on it,
side by side: `loopspy record -r R` (JSON and JSON lines out), `loopspy top --plain -r R` and
`loopspy serve -r R`. Every --every seconds it reads each one's VmRSS and CPU time
(/proc/PID/stat utime+stime); at the end it prints a markdown table: RSS at 1, 5, 10, 20,
30, 45 and 60 minutes (those reached), the growth after the first minute, and the CPU share of
one core over the run. Standard library only.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid, field="VmRSS:"):
    """Resident memory (MB): VmRSS, or RssAnon (the heap and stacks: VmRSS less the pages of
    the executable and libraries, which come and go with the code paths touched)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_s(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=shutil.which("python3"))
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--modes", default="record,top,serve")
    ap.add_argument("--loopspy", help="a built loopspy (default: cargo build --release)")
    args = ap.parse_args()
    if args.loopspy:
        exe = args.loopspy
    else:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
        exe = str(ROOT / "target/release/loopspy")
    work = Path(tempfile.mkdtemp(prefix="loopspy-long-"))
    target = subprocess.Popen([args.python, str(ROOT / "benches/targets/long_service.py")], stdout=subprocess.DEVNULL)
    time.sleep(2.0)
    pid = str(target.pid)
    rate = str(args.rate)
    secs = str(int(args.minutes * 60 + 30))
    cmds = {
        "record": [exe, "record", "--pid", pid, "-r", rate, "-d", secs, "-o", str(work / "r.json"), "-o", str(work / "r.jsonl")],
        "top": [exe, "top", "--plain", "--pid", pid, "-r", rate, "--duration", secs],
        "serve": [exe, "serve", "--pid", pid, "-r", rate, "--listen", "127.0.0.1:0"],
    }
    procs = {}
    for m in args.modes.split(","):
        procs[m] = subprocess.Popen(cmds[m], stdout=subprocess.DEVNULL, stderr=open(work / f"{m}.err", "w"))
    start = time.monotonic()
    series = {m: [] for m in procs}
    try:
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.every)
            t = time.monotonic() - start
            for m, p in procs.items():
                series[m].append((t, rss_mb(p.pid), cpu_s(p.pid), rss_mb(p.pid, "RssAnon:")))
            line = " ".join(f"{m} {s[-1][1] or 0:.1f}MB (anon {s[-1][3] or 0:.1f})" for m, s in series.items())
            print(f"{t / 60:5.1f} min: {line}", flush=True)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait()
        target.kill()
    marks = [1, 5, 10, 20, 30, 45, 60]
    marks = [m for m in marks if m <= args.minutes]
    print(f"\nrate {args.rate:.0f} Hz, {args.minutes:.0f} min, target {args.python}")
    print("VmRSS (RssAnon, the heap, in brackets)")
    print("| mode | " + " | ".join(f"{m} min" for m in marks) + " | heap growth after 1 min | CPU (% of a core) |")
    print("|---|" + "---:|" * len(marks) + "---|---:|")
    for m, s in series.items():
        def at(minute, k=1):
            pts = [x[k] for x in s if x[k] is not None and x[0] <= minute * 60 + args.every / 2]
            return pts[-1] if pts else None
        cells = [f"{at(mk):.1f} ({at(mk, 3):.1f}) MB" if at(mk) is not None else "–" for mk in marks]
        first, last = at(1, 3), at(marks[-1], 3)
        growth = f"{last - first:+.1f} MB" if first is not None and last is not None else "–"
        c = [x for x in s if x[2] is not None]
        cpu = 100.0 * (c[-1][2] - c[0][2]) / (c[-1][0] - c[0][0]) if len(c) > 1 else float("nan")
        print(f"| `{m}` | " + " | ".join(cells) + f" | {growth} | {cpu:.1f} |")
    print(f"(outputs in {work})")


if __name__ == "__main__":
    sys.exit(main())
