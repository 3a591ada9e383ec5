#!/usr/bin/env python3
"""How often loopspy's looks at a loop fail, and how much of the time the loop's state is
unknown, on targets made to tear non-blocking reads.

    benches/failed_looks.py [--python 3.12 ...] [--targets generators,churn] [--rates 100,1000]
                            [--flags plain|all-threads] [--seconds 10] [--uvloop] [--repeat N]
                            [--details] [--churn-only PART,...] [--no-build] [--out DIR]

Builds loopspy (release), then for each interpreter in ~/.cache/loopspy/pythons.tsv (or the
ones --python names) x target x rate x flags:

- generators: benches/targets/generators.py, a loop CPU-bound in generator expressions,
  comprehensions, lambdas, async generators and coroutines 3-5 deep (flags: none);
- churn: benches/targets/churn_more.py, tests/targets/churn.py (threads and loops created and
  destroyed, task storms, gc, fork/exec) plus cancelled tasks and wait_for timeouts that fire
  (flags: none, and --all-threads);

(and, not by default, churn-base: tests/targets/churn.py alone), it starts the target, waits
until its loop runs (and 1 s more), and runs
`loopspy record --pid PID --rate R --duration D -f json -o - --save CAPTURE` against it. From
the JSON it takes `recording.samples`, `failed_samples`, `failed_pct`, `failed_by_reason`,
`achieved_hz`, and each loop's `unknown_pct` (the sample-weighted mean when there are several loops; their
number is reported); from the capture file, the failed looks of the main thread's loop alone
(the JSON counts them over all loops). Around each run it notes the machine's load:
/proc/loadavg before and after, and the CPU time everything else on the machine took during
the run (all CPUs' busy time from /proc/stat, minus loopspy's and the target's own). A read
can tear only while the target runs at the same time: a busy machine may show fewer failures.

--details counts loopspy's own reason for each failed look (LOOPSPY_DEBUG_FAILURES) into
results.json; --churn-only runs only some parts of the churn target, to tell which one makes
looks fail (benches/targets/churn_more.py lists them).

Prints a markdown table and keeps it (table.md), everything measured (results.json) and each
run's JSON and stderr (raw/) under target/failed-looks/<time>/. Standard library only.
About 10 minutes for the 48 cells of a full run at 10 s each (`--uvloop`: the targets run on
uvloop, for the interpreters whose manifest line names a uvloop dir).
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "loopspy"
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
LOOPSPY = TARGET_DIR / "release" / "loopspy"
TARGETS = {
    "generators": ROOT / "benches" / "targets" / "generators.py",
    "churn": ROOT / "benches" / "targets" / "churn_more.py",
    # not run by default: tests/targets/churn.py alone (no cancellations, no wait_for)
    "churn-base": ROOT / "tests" / "targets" / "churn.py",
}
FLAGS = {"generators": [[]], "churn": [[], ["--all-threads"]], "churn-base": [[], ["--all-threads"]]}
CLK_TCK = os.sysconf("SC_CLK_TCK")

CHILDREN = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def vkey(v):
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (999,)


def interpreters():
    """`major.minor` -> (python path, uvloop dir or None), from the test manifest."""
    manifest = Path(os.environ.get("LOOPSPY_PYTHONS", CACHE / "pythons.tsv"))
    found = {}
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            cols = line.split("\t")
            if len(cols) < 2 or line.startswith("#") or not Path(cols[1]).exists():
                continue
            uv = cols[2] if len(cols) > 2 and cols[2] not in ("", "-") else None
            found[cols[0]] = (cols[1], uv)
    return found


def choose_pythons(choices):
    found = interpreters()
    if not choices:
        if not found:
            sys.exit("no interpreters: run scripts/test-pythons.sh, or pass --python PATH")
        return [(v, *found[v]) for v in sorted(found, key=vkey)]
    out = []
    for c in choices:
        if c in found:
            out.append((c, *found[c]))
        elif Path(c).exists():
            out.append((c, c, None))
        else:
            sys.exit(f"--python {c}: not in the manifest ({', '.join(sorted(found, key=vkey))}) and not a file")
    return out


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {model}, Linux {platform.release()}"


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except OSError:
        return "?"


# ---- the machine's load ---------------------------------------------------------------------


def loadavg():
    return tuple(float(x) for x in open("/proc/loadavg").read().split()[:3])


def cpu_jiffies():
    """(busy, steal) jiffies over all CPUs, from /proc/stat's `cpu` line."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = f[:7]
    steal = f[7] if len(f) > 7 else 0
    return user + nice + system + irq + softirq + steal, steal


def proc_cpu(pid):
    """utime + stime of a process, its ended threads included (/proc/PID/stat)."""
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---- one run --------------------------------------------------------------------------------


class Target:
    def __init__(self, args, name, python, uv, workdir, tag):
        env = dict(os.environ)
        if uv:
            env["PYTHONPATH"] = uv + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.ready = workdir / "raw" / f"{tag}.ready"
        if name == "generators":
            argv = [python, TARGETS[name], "--ready", self.ready] + (["--uvloop"] if uv else [])
        else:
            argv = [python, TARGETS[name], self.ready] + (["--uvloop"] if uv else [])
            if name == "churn" and args.churn_only:
                argv += ["--only", args.churn_only]
        self.argv = [str(a) for a in argv]
        self.err = open(workdir / "raw" / f"{tag}.target-stderr.txt", "w")
        # Its own session: churn.py forks; the whole group is killed at the end.
        self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)
        CHILDREN.append(self.proc)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}: {' '.join(self.argv)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in 30 s")
            time.sleep(0.05)

    def stop(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.err.close()


REASONS = ["torn_stack", "no_loop_frames", "changed", "unreadable"]  # probe::FailReason::ALL
UNKNOWN_STATE = 3  # loopstate::LoopState::ALL = idle, callback, loop, unknown, stopped


def per_loop(capture):
    """Samples, unknown samples and failed looks of each loop, from a capture file (`--save`:
    src/capture_file.rs; the JSON has the failed looks of all loops together only)."""
    data = capture.read_bytes()
    if not data.startswith(b"LSREC01\n"):
        raise RuntimeError(f"{capture}: not a capture file")
    loops = []
    i = 8
    while i + 5 <= len(data):
        tag = data[i : i + 1]
        (n,) = struct.unpack_from("<I", data, i + 1)
        payload = data[i + 5 : i + 5 + n]
        if len(payload) < n:
            break
        i += 5 + n
        if tag == b"L":
            meta = json.loads(payload)
            loops.append({"thread_name": meta.get("thread_name"), "native_id": meta.get("native_id"),
                          "loop_class": meta.get("loop_class"), "samples": 0, "unknown_samples": 0,
                          "failed": 0, "failed_by_reason": {}})
        elif tag == b"s":
            _, idx, state = struct.unpack_from("<dHB", payload)
            loops[idx]["samples"] += 1
            loops[idx]["unknown_samples"] += state == UNKNOWN_STATE
        elif tag == b"x":
            _, idx, reason = struct.unpack_from("<dHB", payload)
            name = REASONS[reason] if reason < len(REASONS) else str(reason)
            loops[idx]["failed"] += 1
            loops[idx]["failed_by_reason"][name] = loops[idx]["failed_by_reason"].get(name, 0) + 1
    for l in loops:
        looks = l["samples"] + l["failed"]
        l["failed_pct"] = 100 * l["failed"] / looks if looks else 0.0
    return loops


def failure_details(stderr):
    """`LOOPSPY_DEBUG_FAILURES` lines, addresses and numbers blanked, counted."""
    counts = {}
    for line in stderr.splitlines():
        if line.startswith("loopspy: failed look"):
            key = re.sub(r"\d+", "N", re.sub(r"0x[0-9a-f]+", "ADDR", line[len("loopspy: failed look ") :]))
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def summarize(doc):
    rec = doc["recording"]
    loops = doc.get("loops", [])
    n = sum(l["samples"] for l in loops)
    unknown = sum(l["unknown_pct"] * l["samples"] for l in loops) / n if n else None
    reasons = {k: v for k, v in rec["failed_by_reason"].items() if v}
    return {
        "samples": rec["samples"],
        "failed_samples": rec["failed_samples"],
        "failed_pct": rec["failed_pct"],
        "failed_by_reason": rec["failed_by_reason"],
        "reasons": reasons,
        "achieved_hz": rec["achieved_hz"],
        "duration_s": rec["duration_s"],
        "loops": len(loops),
        "unknown_pct": unknown,
        "unknown_pct_max": max((l["unknown_pct"] for l in loops), default=None),
        "unknown_samples": sum(round(l["unknown_pct"] * l["samples"] / 100) for l in loops),
        "per_loop": None,
        "warnings": rec.get("warnings", []),
        "end": rec.get("end"),
    }


def run_cell(args, version, python, uv, name, rate, flags, workdir, tag):
    """Start the target, record it once, return what was measured (and the machine's load)."""
    target = Target(args, name, python, uv, workdir, tag)
    try:
        time.sleep(args.settle)
        argv = [str(LOOPSPY), "record", "--pid", str(target.pid), "--rate", str(rate), "--duration", str(args.seconds),
                "-f", "json", "-o", "-", "--save", str(workdir / "raw" / f"{tag}.lsrec")] + flags
        capture = workdir / "raw" / f"{tag}.lsrec"
        for attempt in range(5):
            if capture.exists():
                capture.unlink()  # loopspy does not overwrite a capture
            la0 = loadavg()
            busy0, steal0 = cpu_jiffies()
            tcpu0 = proc_cpu(target.pid)
            ccpu0 = children_cpu()
            t0 = time.monotonic()
            env = dict(os.environ, LOOPSPY_DEBUG_FAILURES="1") if args.details else None
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
            wall = time.monotonic() - t0
            ccpu1 = children_cpu()
            tcpu1 = proc_cpu(target.pid)
            busy1, steal1 = cpu_jiffies()
            la1 = loadavg()
            (workdir / "raw" / f"{tag}.loopspy-stderr.txt").write_text(p.stderr)
            if p.returncode == 0 and p.stdout.strip():
                break
            log(f"  loopspy exited with {p.returncode} (attempt {attempt + 1}): {p.stderr.strip()[-400:]}")
            if target.proc.poll() is not None:
                raise RuntimeError(f"the target exited with {target.proc.returncode}")
            time.sleep(0.5)
        else:
            raise RuntimeError(f"loopspy failed 5 times: {p.stderr.strip()[-400:]}")
        (workdir / "raw" / f"{tag}.json").write_text(p.stdout)
        doc = json.loads(p.stdout)
    finally:
        target.stop()
    loopspy_cpu = ccpu1 - ccpu0
    target_cpu = (tcpu1 - tcpu0) if tcpu0 is not None and tcpu1 is not None else None
    all_cpu = (busy1 - busy0) / CLK_TCK
    out = summarize(doc)
    out["per_loop"] = per_loop(workdir / "raw" / f"{tag}.lsrec")
    out["details"] = failure_details(p.stderr) if args.details else None
    # the main thread's loop (else the loop looked at most)
    main = next((l for l in out["per_loop"] if l["thread_name"] == "MainThread"), None) or \
        max(out["per_loop"], key=lambda l: l["samples"] + l["failed"], default=None)
    if main is not None:
        main = dict(main, looks_per_s=(main["samples"] + main["failed"]) / out["duration_s"] if out["duration_s"] else None)
    out["main_loop"] = main
    out.update({
        "python": version, "python_version": doc["target"]["python"], "target": name, "loop": "uvloop" if uv else "asyncio",
        "rate": rate, "flags": " ".join(flags + ([f"(only {args.churn_only})"] if name == "churn" and args.churn_only else [])), "tag": tag, "attempts": attempt + 1,
        "load": {
            "loadavg_before": la0, "loadavg_after": la1, "wall_s": wall,
            "loopspy_cores": loopspy_cpu / wall,
            "target_cores": None if target_cpu is None else target_cpu / wall,
            # everything else on the machine (the target's forked children are in here too)
            "others_cores": None if target_cpu is None else max(0.0, all_cpu - loopspy_cpu - target_cpu) / wall,
            "all_cores": all_cpu / wall,
            "steal_cores": (steal1 - steal0) / CLK_TCK / wall,
        },
    })
    return out


# ---- the table ------------------------------------------------------------------------------


def fmt_pct(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def row(r):
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1])) or "–"
    unknown = fmt_pct(r["unknown_pct"])
    if r["loops"] > 1:
        unknown += f" ({r['loops']} loops, max {fmt_pct(r['unknown_pct_max'], 1)})"
    ld = r["load"]
    load = f"{ld['loadavg_before'][0]:.1f}→{ld['loadavg_after'][0]:.1f}"
    others = "–" if ld["others_cores"] is None else f"{ld['others_cores']:.2f}"
    main = r["main_loop"] or {}
    main_hz = "–" if main.get("looks_per_s") is None else f"{main['looks_per_s']:.0f}"
    main_failed = "–" if not main or r["loops"] <= 1 else f"{main['failed_pct']:.2f}"
    flags = r["flags"] or "–"
    return (f"| {r['python']} | {r['target']} | {r['loop']} | {r['rate']} | {flags} | {r['samples']} | {r['failed_pct']:.2f} | {main_failed} "
            f"| {reasons} | {unknown} | {r['achieved_hz']:.1f} | {main_hz} | {load} | {others} | {ld['loopspy_cores']:.2f} |")


HEADER = ("| Python | target | loop | rate | flags | samples | failed % | main loop failed % | reasons | unknown % | achieved Hz | main loop looks/s "
          "| load 1 min before→after | others' CPU (cores) | loopspy CPU (cores) |\n"
          "|---|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|")


def table(info, results):
    lines = [f"loopspy {info['loopspy_rev']}, {info['machine']}, {info['date']}, {info['seconds']} s per run", "", HEADER]
    lines += [row(r) for r in results]
    lines += ["",
              "failed %: looks that were not samples, of all looks; main loop failed %, main loop looks/s: the main thread's loop "
              "alone (from the capture file: failed looks per loop are not in the JSON); reasons: failed looks by reason (counts); "
              "unknown %: share of wall time whose loop state could not be told (sample-weighted over the loops); "
              "achieved Hz: loopspy's looks per second per loop (all loops seen, short-lived ones included); "
              "others' CPU: CPU time all other processes on the machine took during the run, in cores "
              f"(of {os.cpu_count()})."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", action="append", help="major.minor from ~/.cache/loopspy/pythons.tsv, or a path; repeatable [default: all]")
    ap.add_argument("--targets", default="generators,churn", help="comma-separated: generators, churn, churn-base")
    ap.add_argument("--churn-only", help="churn: run only these parts of the target (churn_more.py --only)")
    ap.add_argument("--details", action="store_true", help="count loopspy's reason for each failed look (LOOPSPY_DEBUG_FAILURES) into results.json")
    ap.add_argument("--rates", default="100,1000", help="comma-separated sampling rates (Hz)")
    ap.add_argument("--flags", default=None, help="only this flag set: 'plain' or 'all-threads'")
    ap.add_argument("--seconds", type=float, default=10, help="seconds per recording [10]")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between the target's loop starting and the recording")
    ap.add_argument("--uvloop", action="store_true", help="run the targets on uvloop (the manifest's uvloop dir)")
    ap.add_argument("--repeat", type=int, default=1, help="record each cell this many times")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", help="results directory [target/failed-looks/<time>]")
    args = ap.parse_args()

    targets = [t for t in args.targets.split(",") if t]
    for t in targets:
        if t not in TARGETS:
            sys.exit(f"--targets: unknown {t!r} (generators, churn, churn-base)")
    rates = [int(r) for r in args.rates.split(",") if r]
    pythons = choose_pythons(args.python)
    if args.uvloop:
        missing = [v for v, _, uv in pythons if not uv]
        if missing:
            log(f"no uvloop in the manifest for {', '.join(missing)}: skipped")
        pythons = [p for p in pythons if p[2]]
    else:
        pythons = [(v, py, None) for v, py, _ in pythons]

    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    workdir = Path(args.out) if args.out else TARGET_DIR / "failed-looks" / stamp
    (workdir / "raw").mkdir(parents=True, exist_ok=True)
    log(f"results in {workdir}")
    if not args.no_build:
        log("$ cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--bin", "loopspy"], cwd=ROOT, check=True)
    info = {"loopspy_rev": git_rev(), "machine": machine(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "seconds": args.seconds, "args": vars(args), "loadavg_start": loadavg()}

    results = []
    for version, py, uv in pythons:
        for name in targets:
            for rate in rates:
                for flags in FLAGS[name]:
                    if args.flags and (args.flags == "plain") != (not flags):
                        continue
                    for rep in range(args.repeat):
                        tag = f"{version}-{name}-{'uvloop' if uv else 'asyncio'}-{rate}hz{''.join(f.replace('--', '-') for f in flags)}"
                        if name == "churn" and args.churn_only:
                            tag += "-only-" + args.churn_only.replace(",", "+")
                        if args.repeat > 1:
                            tag += f"-{rep + 1}"
                        log(f"{tag}: recording {args.seconds:g} s (load {loadavg()[0]:.2f})")
                        try:
                            r = run_cell(args, version, py, uv, name, rate, flags, workdir, tag)
                        except RuntimeError as e:
                            log(f"  {tag}: {e}")
                            results.append({"tag": tag, "error": str(e)})
                            continue
                        results.append(r)
                        log("  " + row(r))
                        (workdir / "results.json").write_text(json.dumps({"info": info, "results": results}, indent=1))

    info["loadavg_end"] = loadavg()
    ok = [r for r in results if "error" not in r]
    text = table(info, ok)
    errors = [r for r in results if "error" in r]
    if errors:
        text += "\n\nNot measured:\n" + "\n".join(f"- {r['tag']}: {r['error']}" for r in errors)
    (workdir / "results.json").write_text(json.dumps({"info": info, "results": results}, indent=1))
    (workdir / "table.md").write_text(text + "\n")
    print("\n" + text)
    log(f"\n(all results: {workdir})")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in CHILDREN:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
