#!/usr/bin/env python3
"""loopspy against py-spy 0.4, on the same target, in the same run.

    benches/compare.py [--python 3.15|PATH] [--uvloop] [--long] [--quick]

Builds loopspy (release), installs the py-spy 0.4 CLI into ~/.cache/loopspy/pyspy-venv when
it is missing, starts benches/targets/throughput.py (a busy asyncio loop that counts the work
it gets done) and measures, for loopspy (non-blocking, and --blocking) and py-spy 0.4
(--nonblocking, and its blocking default):

1. per-sample cost: `cargo bench --bench sampling` (loopspy's `Sampler::sample` and py-spy's
   `get_stack_traces()` on one live target, round-robin), plus a check that the sampler's
   stack walk gives py-spy's frames on the paused target;
2. the highest rate each keeps when asked for 10,000 samples a second;
3. the profiler's CPU (utime+stime from /proc/PID/stat over a window of steady sampling,
   divided by the window) at 100 Hz and 1000 Hz;
4. the target's throughput loss at 100 Hz and 1000 Hz: windows with and without a profiler,
   interleaved (baseline, profiler, baseline, profiler, ..., baseline) in shuffled order,
   over several rounds, each profiler window compared with the baselines either side of it;
4b. the same loss, finely, for the non-blocking modes: one profiler frozen (SIGSTOP) and
   thawed every 0.1 s for 150 s, each thawed window against the frozen ones either side;
5. the profiler's RSS (VmHWM from /proc/PID/status) after a long run at 1000 Hz: 60 s by
   default, 10 minutes with --long;
6. (in the cargo bench) rendering a flame graph of 1,000,000 synthetic samples.

Prints one markdown table at the end and keeps everything it measured under
target/compare/<time>/ (results.json, table.md, the profilers' outputs). Standard library
only. Takes about 22 minutes (--quick: about 5, --long: about 90).
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "loopspy"
VENV = CACHE / "pyspy-venv"
THROUGHPUT = ROOT / "benches" / "targets" / "throughput.py"
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
LOOPSPY = TARGET_DIR / "release" / "loopspy"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The four ways of sampling compared: (key, tool, mode).
MODES = [
    ("loopspy", "loopspy", "non-blocking (default)"),
    ("loopspy-blocking", "loopspy", "--blocking"),
    ("pyspy-nonblocking", "py-spy 0.4", "--nonblocking"),
    ("pyspy", "py-spy 0.4", "blocking (default)"),
]

CHILDREN = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---- setup --------------------------------------------------------------------------------


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


def choose_python(choice):
    found = interpreters()
    key = lambda v: tuple(int(x) for x in v.split("."))
    if choice is None:
        if not found:
            sys.exit("no interpreters: run scripts/test-pythons.sh, or pass --python PATH")
        choice = max(found, key=key)
    if choice in found:
        return choice, found[choice][0], found[choice][1]
    if Path(choice).exists():
        return choice, choice, None
    sys.exit(f"--python {choice}: not in the manifest ({', '.join(sorted(found, key=key))}) and not a file")


def ensure_pyspy():
    exe = VENV / "bin" / "py-spy"
    if exe.exists():
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        if out.startswith("py-spy 0.4"):
            return exe, out.strip()
    log("installing the py-spy 0.4 CLI into " + str(VENV))
    run([sys.executable, "-m", "venv", VENV])
    run([VENV / "bin" / "pip", "install", "--quiet", "py-spy>=0.4,<0.5"])
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return exe, out.strip()


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {model}, {mem_gb:.0f} GB, Linux {platform.release()}"


# ---- /proc --------------------------------------------------------------------------------


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def schedstat_seconds(pid):
    """Time on CPU of a process's live threads, in ns precision (/proc/PID/task/*/schedstat)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
            except (OSError, ValueError):
                pass
    except OSError:
        return None
    return total / 1e9


def vmhwm_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ---- the target -----------------------------------------------------------------------------


class Target:
    """benches/targets/throughput.py, running; its ops counter read from its report file."""

    def __init__(self, python, uvloop_dir, workdir, name, interval=0.1):
        self.ops_path = workdir / f"ops-{name}.txt"
        env = dict(os.environ)
        args = [python, THROUGHPUT, self.ops_path, "--interval", interval]
        if uvloop_dir:
            env["PYTHONPATH"] = uvloop_dir
            args.append("--uvloop")
        self.proc = subprocess.Popen([str(a) for a in args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        CHILDREN.append(self.proc)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while len(self.points()) < 3:
            if self.proc.poll() is not None:
                sys.exit(f"throughput.py exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                sys.exit("throughput.py did not start")
            time.sleep(0.05)

    def points(self):
        pts = []
        try:
            for line in open(self.ops_path):
                parts = line.split()
                if len(parts) == 2 and parts[0] != "ready":
                    pts.append((float(parts[0]), int(parts[1])))
        except OSError:
            pass
        return pts

    def ops_rate(self, t0, t1, pts=None):
        """Ops per second between two CLOCK_MONOTONIC times (interpolated)."""
        if pts is None:
            time.sleep(0.25)  # let the reporter write past t1
            pts = self.points()

        def ops_at(t):
            for (ta, a), (tb, b) in zip(pts, pts[1:]):
                if ta <= t <= tb:
                    return a + (b - a) * (t - ta) / (tb - ta)
            raise RuntimeError(f"no ops report around {t} ({pts[0][0] if pts else None}..{pts[-1][0] if pts else None})")

        return (ops_at(t1) - ops_at(t0)) / (t1 - t0)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


# ---- the profilers --------------------------------------------------------------------------


class Profiler:
    """One profiler process, its output lines timestamped, its rusage at exit."""

    def __init__(self, mode, pid, rate, duration, workdir, tag, pyspy):
        self.mode = mode
        self.out = workdir / f"{tag}-{mode}"
        if mode.startswith("loopspy"):
            self.out = self.out.with_suffix(".json")
            argv = [LOOPSPY, "record", "--pid", pid, "--rate", rate, "-d", duration, "-o", self.out]
            if mode == "loopspy-blocking":
                argv.append("--blocking")
        else:
            self.out = self.out.with_suffix(".txt")
            argv = [pyspy, "record", "--pid", pid, "--rate", int(rate), "-d", int(round(duration)), "--format", "raw", "--idle", "-o", self.out]
            if mode == "pyspy-nonblocking":
                argv.append("--nonblocking")
        self.argv = [str(a) for a in argv]
        self.lines = []
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        CHILDREN.append(self.proc)
        self.pid = self.proc.pid
        self.launched = time.monotonic()
        self.readers = [threading.Thread(target=self._read, args=(s,), daemon=True) for s in (self.proc.stdout, self.proc.stderr)]
        for t in self.readers:
            t.start()
        self.rusage = None
        self.status = None

    def _read(self, stream):
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def alive(self):
        if self.rusage is not None:
            return False
        # Without reaping it: `wait` collects its rusage.
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def wait(self, timeout=None):
        """Wait for exit (os.wait4, for the peak RSS of the whole run)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status, self.rusage = status, rusage
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if deadline is not None and time.monotonic() > deadline:
                self.proc.kill()
                deadline = None
            time.sleep(0.02)
        for t in self.readers:
            t.join(timeout=5)
        return self.proc.returncode

    def text(self):
        return "\n".join(l for _, l in self.lines)

    def samples(self):
        """(samples taken, seconds spent sampling, failed samples)."""
        if self.mode.startswith("loopspy"):
            rec = json.loads(self.out.read_text())["recording"]
            return rec["samples"], rec["duration_s"], rec["failed_samples"]
        text = self.text()
        m = re.search(r"Samples: (\d+) Errors: (\d+)", text)
        if not m:
            raise RuntimeError("py-spy did not report its samples:\n" + text)
        start = next((t for t, l in self.lines if "Sampling process" in l), None)
        end = next((t for t, l in self.lines if "Samples:" in l), None)
        if start is None or end is None:
            raise RuntimeError("py-spy's output lacks its start or end line:\n" + text)
        return int(m.group(1)), end - start, int(m.group(2))


def start_profiler(mode, target, rate, duration, workdir, tag, pyspy, settle):
    """Start a profiler and wait `settle` seconds; attaching to a busy target can fail (for
    both tools, on a torn read): start again, up to 5 times."""
    for attempt in range(5):
        p = Profiler(mode, target.pid, rate, duration, workdir, f"{tag}-try{attempt}" if attempt else tag, pyspy)
        time.sleep(settle)
        if p.alive():
            return p, attempt
        p.wait()
        log(f"  {mode}: exited during attach ({p.proc.returncode}), retrying: {p.text()[-300:]}")
    raise RuntimeError(f"{mode} could not attach 5 times")


# ---- the measurements -----------------------------------------------------------------------


def cargo_bench(args, python_arg, workdir):
    out = workdir / "sampling.json"
    cmd = ["cargo", "bench", "--bench", "sampling", "--", "--python", python_arg, "--iterations", args.iterations, "--json", out]
    if args.uvloop:
        cmd.append("--uvloop")
    run(cmd, cwd=ROOT)
    check = ["cargo", "bench", "--bench", "sampling", "--", "--python", python_arg, "--check", args.check]
    if args.uvloop:
        check.append("--uvloop")
    if args.check > 0:
        run(check, cwd=ROOT)
    return json.loads(out.read_text())


def sustained(args, py, uv, workdir, pyspy):
    log(f"\n== sustained rate: each asked for {args.max_rate} Hz for {args.max_seconds} s")
    target = Target(py, uv, workdir, "sustained")
    time.sleep(2)
    out = {}
    try:
        for key, _, _ in MODES:
            for attempt in range(5):
                p = Profiler(key, target.pid, args.max_rate, args.max_seconds, workdir, f"sustained{attempt}", pyspy)
                if p.wait(timeout=args.max_seconds + 60) == 0:
                    break
                log(f"  {key}: failed ({p.proc.returncode}), retrying: {p.text()[-300:]}")
            n, secs, failed = p.samples()
            out[key] = {"samples": n, "seconds": secs, "failed": failed, "rate": n / secs if secs > 0 else 0}
            log(f"  {key}: {n} samples in {secs:.2f} s = {n / secs:.0f}/s ({failed} failed)")
            time.sleep(1)
    finally:
        target.stop()
    return out


def windows(args, py, uv, workdir, pyspy):
    """Items 3 and 4: profiler CPU and target throughput, interleaved with baselines."""
    configs = [(key, rate) for rate in (100, 1000) for key, _, _ in MODES]
    log(f"\n== throughput and CPU: {args.rounds} rounds of {len(configs)} profiler windows of {args.window} s, "
        f"each between two baseline windows")
    results = []  # one dict per window
    rng = random.Random(args.seed)
    settle = 1.0
    for rnd in range(args.rounds):
        target = Target(py, uv, workdir, f"round{rnd}")
        time.sleep(3)  # warm up
        order = configs[:]
        rng.shuffle(order)
        try:
            for i, cfg in enumerate([None] + [x for c in order for x in (c, None)]):
                if cfg is None:
                    t0, r0 = time.monotonic(), schedstat_seconds(target.pid)
                    time.sleep(args.window)
                    t1, r1 = time.monotonic(), schedstat_seconds(target.pid)
                    ops = target.ops_rate(t0, t1)
                    results.append({"round": rnd, "seq": i, "mode": None, "rate": 0, "ops": ops, "target_cpu": (r1 - r0) / (t1 - t0)})
                    log(f"  round {rnd + 1} baseline: {ops:,.0f} ops/s, target on CPU {100 * (r1 - r0) / (t1 - t0):.1f} %")
                    continue
                key, rate = cfg
                p, retries = start_profiler(key, target, rate, settle + args.window + 1.0, workdir, f"r{rnd}-{rate}", pyspy, settle)
                t0, c0, s0, r0 = time.monotonic(), cpu_seconds(p.pid), schedstat_seconds(p.pid), schedstat_seconds(target.pid)
                time.sleep(args.window)
                t1, c1, s1, r1 = time.monotonic(), cpu_seconds(p.pid), schedstat_seconds(p.pid), schedstat_seconds(target.pid)
                alive = p.alive()
                p.wait(timeout=args.window + 60)
                ops = target.ops_rate(t0, t1)
                n, secs, failed = p.samples()
                row = {
                    "round": rnd, "seq": i, "mode": key, "rate": rate, "ops": ops,
                    "cpu_s": (c1 - c0) if None not in (c0, c1) else None,
                    "sched_s": (s1 - s0) if None not in (s0, s1) else None,
                    "wall_s": t1 - t0, "alive_through_window": alive, "attach_retries": retries,
                    "target_cpu": (r1 - r0) / (t1 - t0),
                    "samples": n, "sampling_s": secs, "failed": failed,
                }
                results.append(row)
                log(f"  round {rnd + 1} {key} @{rate} Hz: {ops:,.0f} ops/s, target on CPU {100 * row['target_cpu']:.1f} %, "
                    f"profiler CPU {100 * row['cpu_s'] / row['wall_s']:.2f} % "
                    f"({100 * row['sched_s'] / row['wall_s']:.2f} % by schedstat), {n} samples ({failed} failed)")
                time.sleep(0.5)
        finally:
            target.stop()
    return results


def summarize_windows(results):
    """Per (mode, rate): CPU % and throughput loss against the baselines either side."""
    out = {}
    noise = []
    for rnd in sorted({r["round"] for r in results}):
        seq = [r for r in results if r["round"] == rnd]
        seq.sort(key=lambda r: r["seq"])
        bases = [r for r in seq if r["mode"] is None]
        for a, b in zip(bases, bases[1:]):
            noise.append(abs(a["ops"] - b["ops"]) / ((a["ops"] + b["ops"]) / 2))
        for k, r in enumerate(seq):
            if r["mode"] is None:
                continue
            before, after = seq[k - 1], seq[k + 1]
            assert before["mode"] is None and after["mode"] is None
            base = (before["ops"] + after["ops"]) / 2
            e = out.setdefault((r["mode"], r["rate"]), {"loss": [], "oncpu": [], "cpu": 0.0, "sched": 0.0, "wall": 0.0, "rates": []})
            e["loss"].append(1 - r["ops"] / base)
            e["oncpu"].append(1 - r["target_cpu"] / ((before["target_cpu"] + after["target_cpu"]) / 2))
            e["cpu"] += r["cpu_s"] or 0
            e["sched"] += r["sched_s"] or 0
            e["wall"] += r["wall_s"]
            e["rates"].append(r["samples"] / r["sampling_s"] if r["sampling_s"] else 0)
    summary = {}
    for (mode, rate), e in out.items():
        n = len(e["loss"])
        summary[f"{mode}@{rate}"] = {
            "loss_median": statistics.median(e["loss"]),
            "loss_mean": statistics.mean(e["loss"]),
            # 95 % confidence half-width of the mean (normal approximation).
            "loss_ci95": 1.96 * statistics.stdev(e["loss"]) / n ** 0.5 if n > 1 else None,
            # The same for the target's time on CPU (schedstat): what pauses cost it.
            "oncpu_loss_mean": statistics.mean(e["oncpu"]),
            "oncpu_loss_ci95": 1.96 * statistics.stdev(e["oncpu"]) / n ** 0.5 if n > 1 else None,
            "loss_all": e["loss"],
            "cpu_pct": 100 * e["cpu"] / e["wall"],
            "cpu_pct_schedstat": 100 * e["sched"] / e["wall"],
            "achieved_rate_median": statistics.median(e["rates"]),
        }
    baseline_ops = [r["ops"] for r in results if r["mode"] is None]
    return summary, {
        "baseline_ops_median": statistics.median(baseline_ops),
        "baseline_step_median": statistics.median(noise) if noise else 0,
        "baseline_step_max": max(noise) if noise else 0,
        "baseline_oncpu_median": statistics.median([r["target_cpu"] for r in results if r["mode"] is None]),
        "windows": len(baseline_ops),
    }

PAIRED = [("loopspy", 100), ("pyspy-nonblocking", 100), ("loopspy", 1000), ("pyspy-nonblocking", 1000)]


def paired(args, py, uv, workdir, pyspy):
    """Item 4, finely, for the non-blocking modes: one profiler runs for `paired_seconds`
    and is frozen (SIGSTOP) and thawed (SIGCONT) every `paired_window` seconds, so the
    target's ops rate alternates between windows without and with sampling. Each "on" window
    is compared with the mean of the "off" windows either side: the machine's slow drifts
    cancel and hundreds of pairs give a tight interval. Freezing a blocking profiler could
    leave the target stopped, so the blocking modes are measured by `windows` only.
    py-spy catches up on missed samples after a freeze (loopspy does not): the samples each
    took per second of "on" time are reported beside the loss."""
    w = args.paired_window
    log(f"\n== throughput, paired: {args.paired_seconds} s per profiler, frozen and thawed every {w} s")
    out = {}
    target = Target(py, uv, workdir, "paired", interval=0.02)
    time.sleep(3)
    try:
        for key, rate in PAIRED:
            p, _ = start_profiler(key, target, rate, args.paired_seconds + 3.0, workdir, f"paired-{rate}", pyspy, 1.0)
            windows_ = []  # (t0, t1, on)
            end = time.monotonic() + args.paired_seconds
            on = True
            while time.monotonic() < end and p.alive():
                os.kill(p.pid, signal.SIGCONT if on else signal.SIGSTOP)
                t0 = time.monotonic()
                time.sleep(w)
                windows_.append((t0, time.monotonic(), on))
                on = not on
            os.kill(p.pid, signal.SIGCONT)
            os.kill(p.pid, signal.SIGINT)  # both write their output on Ctrl-C
            p.wait(timeout=60)
            time.sleep(0.1)
            pts = target.points()
            rates = [(target.ops_rate(a, b, pts), on) for a, b, on in windows_]
            losses = [1 - r / ((rates[k - 1][0] + rates[k + 1][0]) / 2)
                      for k, (r, on) in enumerate(rates) if on and 0 < k < len(rates) - 1]
            # The same loss estimated the other way round (each frozen window against its thawed
            # neighbours): a second estimate, a check on the first.
            control = [1 - r / ((rates[k - 1][0] + rates[k + 1][0]) / 2)
                       for k, (r, on) in enumerate(rates) if not on and 0 < k < len(rates) - 1]
            n, secs, failed = p.samples()
            # Unfrozen time: the settling second before the first window, and the "on" windows.
            on_time = 1.0 + sum(b - a for a, b, on in windows_ if on)
            e = {
                "pairs": len(losses),
                "loss_mean": statistics.mean(losses),
                "loss_ci95": 1.96 * statistics.stdev(losses) / len(losses) ** 0.5,
                "control_mean": -statistics.mean(control),
                "samples": n, "failed": failed,
                "samples_per_unfrozen_second": n / on_time,
            }
            out[f"{key}@{rate}"] = e
            log(f"  {key} @{rate} Hz: loss {100 * e['loss_mean']:+.2f} % ±{100 * e['loss_ci95']:.2f} over {e['pairs']} pairs "
                f"(check {100 * e['control_mean']:+.2f} %), {e['samples_per_unfrozen_second']:.0f} samples per unfrozen second")
    finally:
        target.stop()
    return out


def rss(args, py, uv, workdir, pyspy):
    """Item 5: two profilers at a time (one non-blocking, one blocking: two blocking ones
    cannot both ptrace the target) at 1000 Hz for `rss_seconds`."""
    secs = args.rss_seconds
    pairs = [("loopspy", "pyspy"), ("pyspy-nonblocking", "loopspy-blocking")]
    log(f"\n== RSS: at 1000 Hz for {secs} s, two profilers at a time: {pairs}")
    out = {}
    for a, b in pairs:
        target = Target(py, uv, workdir, f"rss-{a}")
        time.sleep(2)
        try:
            procs = [start_profiler(m, target, 1000, secs, workdir, "rss", pyspy, 0.5)[0] for m in (a, b)]
            last = {p.mode: None for p in procs}
            end_of_sampling = {}
            while any(p.alive() for p in procs):
                for p in procs:
                    v = vmhwm_mb(p.pid)
                    if v is not None and p.alive():
                        last[p.mode] = v
                        if time.monotonic() - p.launched < secs:
                            end_of_sampling[p.mode] = v
                time.sleep(0.1)
            for p in procs:
                p.wait()
                n, s, failed = p.samples()
                out[p.mode] = {"vmhwm_mb": last[p.mode], "vmhwm_sampling_mb": end_of_sampling.get(p.mode),
                               "samples": n, "seconds": s, "failed": failed}
                log(f"  {p.mode}: VmHWM {last[p.mode]:.1f} MB at exit ({end_of_sampling.get(p.mode) or 0:.1f} MB "
                    f"while sampling), {n} samples")
        finally:
            target.stop()
    return out


# ---- report -----------------------------------------------------------------------------------


def fmt_pct(x, digits=1):
    return "—" if x is None else f"{100 * x:+.{digits}f} %"


def table(info, bench, sust, summary, noise, rss_out, args, pair=None):
    per = bench.get("per_sample", {}).get("samplers", {})
    bench_names = {
        "loopspy": "loopspy Sampler::sample",
        "loopspy-blocking": "loopspy Sampler::sample --blocking",
        "pyspy-nonblocking": "py-spy get_stack_traces (nonblocking)",
        "pyspy": "py-spy get_stack_traces (Lock)",
    }
    lines = []
    ps = bench.get("per_sample", {})
    lines.append(f"## loopspy vs py-spy 0.4: Python {ps.get('python', info['python'])}"
                 f"{' (uvloop)' if args.uvloop else ' (stock asyncio loop)'}, benches/targets/throughput.py")
    lines.append("")
    lines.append(f"Machine: {info['machine']}. {info['pyspy']}. {info['date']}.")
    lines.append("")
    lines.append(f"| tool | mode | per sample, median (p90) µs | failed samples | max sustained rate /s ({args.max_rate} asked) "
                 f"| CPU % at 100 Hz | CPU % at 1000 Hz | target throughput loss at 100 Hz | at 1000 Hz "
                 f"| target on-CPU time lost at 100 Hz | at 1000 Hz | RSS (VmHWM) after {args.rss_seconds} s at 1000 Hz |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, tool, mode in MODES:
        b = per.get(bench_names[key], {})
        cost = f"{b['median_us']:.0f} ({b['p90_us']:.0f})" if b else "—"
        failed = f"{100 * b['failed'] / max(1, b['failed'] + b['n']):.1f} %" if b else "—"
        s = sust.get(key)
        rate = f"{s['rate']:,.0f}" if s else "—"
        c100, c1000 = summary.get(f"{key}@100"), summary.get(f"{key}@1000")
        cpu = lambda c: "—" if not c else f"{c['cpu_pct']:.2f}"
        loss = lambda c: "—" if not c else fmt_pct(c["loss_mean"]) + ("" if c["loss_ci95"] is None else f" ±{100 * c['loss_ci95']:.1f}")
        oncpu = lambda c: "—" if not c else fmt_pct(c["oncpu_loss_mean"]) + ("" if c["oncpu_loss_ci95"] is None else f" ±{100 * c['oncpu_loss_ci95']:.1f}")
        r = rss_out.get(key)
        mem = f"{r['vmhwm_mb']:.1f} MB" if r and r["vmhwm_mb"] else "—"
        lines.append(f"| {tool} | {mode} | {cost} | {failed} | {rate} | {cpu(c100)} | {cpu(c1000)} | {loss(c100)} | {loss(c1000)} "
                     f"| {oncpu(c100)} | {oncpu(c1000)} | {mem} |")
    lines.append("")
    if noise:
        lines.append(
            f"Throughput: {noise['windows']} baseline windows of {args.window} s, median {noise['baseline_ops_median']:,.0f} ops/s; "
            f"two consecutive baselines differ by {100 * noise['baseline_step_median']:.2f} % (median), "
            f"{100 * noise['baseline_step_max']:.2f} % (max): losses smaller than that are noise. "
            f"Loss = 1 − ops/s with the profiler ÷ mean of the baselines either side: mean of {args.rounds} rounds "
            f"± 95 % confidence half-width (negative: faster than the baselines). Target on-CPU time: its threads' "
            f"run time (/proc/PID/task/*/schedstat) per second of the window, {100 * noise['baseline_oncpu_median']:.1f} % "
            f"in the baselines (median), compared the same way: it shows the pauses of the blocking modes without the "
            f"machine's speed noise."
        )
        lines.append("")
    if pair:
        lines.append(f"Target throughput loss of the non-blocking modes, paired (the profiler frozen and thawed every "
                     f"{args.paired_window} s for {args.paired_seconds} s; mean ± 95 % half-width; check: the same loss "
                     f"estimated from each frozen window against its thawed neighbours):")
        lines.append("")
        lines.append("| tool | rate asked | samples per unfrozen second | throughput loss | pairs | check |")
        lines.append("|---|---|---|---|---|---|")
        for key, rate in PAIRED:
            e = pair.get(f"{key}@{rate}")
            if e:
                tool = dict((k, f"{t} {m}") for k, t, m in MODES)[key]
                lines.append(f"| {tool} | {rate} Hz | {e['samples_per_unfrozen_second']:.0f} | {fmt_pct(e['loss_mean'], 2)} "
                             f"±{100 * e['loss_ci95']:.2f} | {e['pairs']} | {fmt_pct(e['control_mean'], 2)} |")
        lines.append("")
    fg = bench.get("flamegraph")
    if fg:
        lines.append(
            f"Flame graph of {fg['samples']:,} synthetic samples ({fg['distinct_stacks']} distinct stacks, depth 10-30, "
            f"{fg['episodes']} blocking episodes): metrics::analyze {fg['analyze_s']:.2f} s + flamegraph::fold "
            f"{fg['fold_s']:.2f} s + svg {fg['svg_s']:.2f} s = {fg['analyze_fold_svg_s']:.2f} s; collapsed text "
            f"{fg['collapsed_s']:.3f} s."
        )
        lines.append("")
    if rss_out:
        lines.append(
            f"RSS: VmHWM from /proc/PID/status, read every 100 ms until the profiler exited (it includes writing the "
            f"flame graph), after sampling at 1000 Hz for {args.rss_seconds} s"
            f"{' (--long: the 10-minute run)' if args.long else ' (the default short run; --long runs 10 minutes)'}. "
            f"Two profilers ran at a time (loopspy + py-spy blocking, then py-spy --nonblocking + loopspy --blocking). "
            f"VmHWM just before the end of sampling, and samples taken: "
            + ", ".join(f"{k} {v['vmhwm_sampling_mb'] or 0:.1f} MB ({v['samples']:,})" for k, v in rss_out.items())
            + "."
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", help="major.minor from ~/.cache/loopspy/pythons.tsv, or a path [default: newest]")
    ap.add_argument("--uvloop", action="store_true", help="run the target on uvloop (from the manifest's uvloop dir)")
    ap.add_argument("--long", action="store_true", help="RSS after 10 minutes (instead of 60 s), 10 throughput rounds of 5 s windows")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds of 2 s windows, RSS after 20 s")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--window", type=int, help="seconds per throughput window")
    ap.add_argument("--rss-seconds", type=int)
    ap.add_argument("--max-rate", type=int, default=10000)
    ap.add_argument("--max-seconds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=2000, help="per-sample rounds in the cargo bench")
    ap.add_argument("--check", type=int, default=200, help="paused samples checked against py-spy (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--paired-seconds", type=int, help="seconds per profiler in the paired throughput test")
    ap.add_argument("--paired-window", type=float, default=0.1, help="seconds between freezing and thawing the profiler")
    ap.add_argument("--skip", default="", help="comma-separated: bench,sustained,windows,paired,rss")
    args = ap.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 10 if args.long else 4)
    args.window = args.window or (2 if args.quick else 5 if args.long else 4)
    args.paired_seconds = args.paired_seconds or (20 if args.quick else 600 if args.long else 150)
    args.rss_seconds = args.rss_seconds or (20 if args.quick else 600 if args.long else 60)
    skip = set(filter(None, args.skip.split(",")))

    version, py, uv = choose_python(args.python)
    if args.uvloop and not uv:
        sys.exit(f"no uvloop for Python {version} in the manifest")
    uv = uv if args.uvloop else None
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    workdir = TARGET_DIR / "compare" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"results in {workdir}")

    run(["cargo", "build", "--release", "--bin", "loopspy"], cwd=ROOT)
    pyspy, pyspy_version = ensure_pyspy()
    info = {"python": version, "python_path": py, "machine": machine(), "pyspy": pyspy_version,
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "args": vars(args)}
    log(f"Python {version} ({py}), {pyspy_version}, {info['machine']}")

    bench = {} if "bench" in skip else cargo_bench(args, version if version in interpreters() else py, workdir)
    sust = {} if "sustained" in skip else sustained(args, py, uv, workdir, pyspy)
    wins = [] if "windows" in skip else windows(args, py, uv, workdir, pyspy)
    summary, noise = summarize_windows(wins) if wins else ({}, {})
    pair = {} if "paired" in skip else paired(args, py, uv, workdir, pyspy)
    rss_out = {} if "rss" in skip else rss(args, py, uv, workdir, pyspy)

    text = table(info, bench, sust, summary, noise, rss_out, args, pair)
    (workdir / "results.json").write_text(json.dumps(
        {"info": info, "bench": bench, "sustained": sust, "windows": wins, "summary": summary, "noise": noise, "paired": pair, "rss": rss_out},
        indent=2))
    (workdir / "table.md").write_text(text + "\n")
    print("\n" + text)
    log(f"\n(all results: {workdir}/results.json)")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in CHILDREN:
            if p.poll() is None:
                p.kill()
