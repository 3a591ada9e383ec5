#!/usr/bin/env python3
"""What `loopspy serve` costs at its default rate, beside `py-spy record --nonblocking` at the
same rate, on the same target, at the same time.

    benches/serve_cost.py [--python 3.13|PATH] [--rate 20] [--seconds 60] [--scrape 15]

Builds loopspy (release), installs the py-spy 0.4 CLI into ~/.cache/loopspy/pyspy-venv when it
is missing (as benches/compare.py does), starts benches/targets/throughput.py (a loop kept busy
with call chains 4-18 frames deep: every sample walks a real stack) and runs both side by
side: `loopspy serve --pid P --rate R` (scraped every --scrape seconds, as Prometheus would)
and `py-spy record --nonblocking --rate R --pid P --format raw`. After a few seconds of
settling it measures, over --seconds:

- each one's CPU: time on CPU of all its threads (/proc/PID/task/*/schedstat, ns) over the
  window, as a share of one core;
- the samples loopspy took (from loopspy_samples_total) per second;
- loopspy's resident memory (VmRSS) at the start and the end of the window, and its peak.

Prints a markdown table. Standard library only; about --seconds + 20 s.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the shared setup: interpreters, py-spy, /proc readers, the target)


def rss_mb(pid, field="VmRSS:"):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def metric(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scrape", type=float, default=15.0)
    args = ap.parse_args()

    version, python, _uv = compare.choose_python(args.python)
    compare.run(["cargo", "build", "--release", "--quiet"], cwd=compare.ROOT)
    pyspy, pyspy_version = compare.ensure_pyspy()
    work = Path(tempfile.mkdtemp(prefix="serve-cost-"))
    target = compare.Target(python, None, work, "serve")
    procs = []
    try:
        serve = subprocess.Popen(
            [str(compare.LOOPSPY), "serve", "--pid", str(target.pid), "--rate", str(args.rate), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(serve)
        port = None
        for line in serve.stderr:
            if "serving http://127.0.0.1:" in line:
                port = int(line.split("serving http://127.0.0.1:")[1].split("/")[0])
                break
        if port is None:
            sys.exit("loopspy serve did not start")
        duration = int(args.seconds + 30)
        spy = subprocess.Popen(
            [str(pyspy), "record", "--nonblocking", "--rate", str(int(args.rate)), "--pid", str(target.pid), "-d", str(duration), "--format", "raw", "-o", str(work / "pyspy.txt")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(spy)

        def scrape():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                return r.read().decode()

        time.sleep(5)
        t0 = time.monotonic()
        cpu0 = {p.pid: compare.schedstat_seconds(p.pid) for p in procs}
        samples0 = metric(scrape(), "loopspy_samples_total")
        rss0 = rss_mb(serve.pid)
        next_scrape = t0 + args.scrape
        while time.monotonic() < t0 + args.seconds:
            time.sleep(0.2)
            if time.monotonic() >= next_scrape:
                scrape()
                next_scrape += args.scrape
        text = scrape()
        t1 = time.monotonic()
        cpu1 = {p.pid: compare.schedstat_seconds(p.pid) for p in procs}
        samples1 = metric(text, "loopspy_samples_total")
        rss1, hwm = rss_mb(serve.pid), rss_mb(serve.pid, "VmHWM:")
        window = t1 - t0
        share = {pid: 100 * (cpu1[pid] - cpu0[pid]) / window for pid in cpu0}
        print(f"\n{compare.machine()}; Python {version}; target benches/targets/throughput.py; {args.rate:g} Hz; {window:.0f} s window\n")
        print("| sampler | CPU (% of one core) | samples/s | RSS start → end (peak) |")
        print("|---|---|---|---|")
        print(
            f"| `loopspy serve --rate {args.rate:g}` (scraped every {args.scrape:g} s) | {share[serve.pid]:.2f} % | "
            f"{(samples1 - samples0) / window:.1f} | {rss0:.1f} → {rss1:.1f} MB ({hwm:.1f}) |"
        )
        print(f"| `py-spy record --nonblocking --rate {int(args.rate)}` ({pyspy_version}) | {share[spy.pid]:.2f} % | | |")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        target.stop()


if __name__ == "__main__":
    main()
