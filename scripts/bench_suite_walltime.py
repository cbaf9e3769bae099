"""Suite throughput: quick-suite wall time serial vs --jobs, alone and beside a busy process; per-run overhead.

    .venv/bin/python scripts/bench_suite_walltime.py walltime [--repeats 3] [--suite quick] [key=value ...]
    .venv/bin/python scripts/bench_suite_walltime.py overhead

``walltime`` times whole ``lrbench run SUITE`` processes (fresh results folder each time, no environment
variables: ``OMP_NUM_THREADS`` is removed) in interleaved rounds, each round one of every mode:

* ``serial-1thread``  ``--jobs 1 --threads 1`` (one run at a time, one thread: the old advice)
* ``default``         no flags (``--jobs`` = cores, threads auto) — must be the fast one
* ``default+busy``    no flags, beside one competing process spinning on one core

and prints the median of each, the ratios serial/default and (default+busy)/default, and the load average
seen before and after. ``overhead`` measures a run's fixed cost: process start + imports, the first and a
warm 1-step run in one process, model+data build, the memory/FLOP probe and the record write, and a run
process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"serial-1thread": ["--jobs", "1", "--threads", "1"], "default": [], "default+busy": []}
BUSY = "while True: pass"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["WANDB_MODE"] = "disabled"
    return env


def time_suite(suite: str, flags: list[str], overrides: list[str], busy: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="lrbench-walltime-") as tmp:
        cmd = [sys.executable, "-m", "lrbench", "run", suite, "--out", tmp, "--no-progress", *flags, *overrides]
        spinner = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
        try:
            start = time.perf_counter()
            done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
            seconds = time.perf_counter() - start
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        if done.returncode != 0:
            raise SystemExit(f"lrbench run failed ({' '.join(flags)}): {done.stderr[-1500:]}")
        return seconds


def walltime(args: argparse.Namespace) -> None:
    print(f"cores {len(os.sched_getaffinity(0))}, load average before {os.getloadavg()}", flush=True)
    modes = args.modes or list(MODES)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.repeats):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))  # no mode always first
        for mode in order:
            t = time_suite(args.suite, MODES[mode], args.overrides, busy=mode.endswith("+busy"))
            times[mode].append(t)
            print(f"  round {r + 1} {mode:15s} {t:7.1f} s  (load {os.getloadavg()[0]:.2f})", flush=True)
    med = {m: statistics.median(t) for m, t in times.items()}
    print(f"load average after {os.getloadavg()}")
    print(f"{'mode':15s} {'median s':>9s}  all")
    for mode, t in times.items():
        print(f"{mode:15s} {med[mode]:9.1f}  {' '.join(f'{x:.1f}' for x in t)}")
    if "serial-1thread" in med and "default" in med:
        print(f"speed-up serial-1thread / default      = {med['serial-1thread'] / med['default']:.2f}  (target >= 1.7)")
    if "default+busy" in med and "default" in med:
        print(f"slow-down (default+busy) / default     = {med['default+busy'] / med['default']:.2f}  (target <= 1.3)")
    print(json.dumps({"suite": args.suite, "overrides": args.overrides, "seconds": times, "median": med}))


def _child_peak_rss(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    subprocess.run(cmd, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def overhead(args: argparse.Namespace) -> None:
    imports = "import torch, pytorch_lightning, lrbench.suite.training.runner, lrbench.estimators, lrbench.tasks"
    starts = [_child_peak_rss([sys.executable, "-c", imports])[0] for _ in range(3)]
    print(f"process start + imports: median {statistics.median(starts):.2f} s ({', '.join(f'{s:.2f}' for s in starts)})")
    with tempfile.TemporaryDirectory(prefix="lrbench-overhead-") as tmp:
        suite = Path(tmp) / "one.yaml"
        suite.write_text("runs: [{task: digits-mlp, estimator: bp, max_steps: 1, max_epochs: null, accelerator: cpu}]\n")
        seconds, rss = _child_peak_rss([sys.executable, "-m", "lrbench", "run", str(suite), "--out",
                                        str(Path(tmp) / "o"), "--no-progress"])
        print(f"one 1-step run as its own process: {seconds:.2f} s wall, peak RSS {rss / 1e9:.2f} GB")
    script = r'''
import time, sys, json
t0 = time.perf_counter()
import torch
from lrbench.suite.cli.suite_files import expand_suite
from lrbench.suite.training.runner import run_one, measure_step_cost, _estimator
from lrbench.suite.training.results_store import write_record
from lrbench.tasks import get_task
t_import = time.perf_counter() - t0
out = sys.argv[1]
def cfg(lr):
    [c] = expand_suite({"runs": [{"task": "digits-mlp", "estimator": "bp", "max_steps": 1, "max_epochs": None,
                                   "lr": lr}]}, {"accelerator": "cpu", "progress": False})
    return c
c = cfg(1e-3); t = time.perf_counter(); rec = run_one(c, out); first = time.perf_counter() - t
warm = []
for lr in (2e-3, 3e-3, 4e-3):
    c = cfg(lr); t = time.perf_counter(); rec = run_one(c, out); warm.append(time.perf_counter() - t)
spec = get_task("digits-mlp"); t = time.perf_counter(); model = spec.build_model(); data = spec.load_data()
build = time.perf_counter() - t
x, y = next(iter(data.batches("train", 64, seed=0, epoch=0)))
t = time.perf_counter(); measure_step_cost(model, _estimator(c), c, spec.loss_fn, x, y, torch.device("cpu"))
probe = time.perf_counter() - t
t = time.perf_counter(); write_record(out, rec); write = time.perf_counter() - t
print(json.dumps({"imports_in_process": t_import, "first_run": first, "warm_runs": warm, "model_data_build": build,
                  "step_cost_probe": probe, "record_write": write}))
'''
    with tempfile.TemporaryDirectory(prefix="lrbench-overhead-") as tmp:
        done = subprocess.run([sys.executable, "-c", script, tmp], env=_env(), capture_output=True, text=True, check=True)
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"imports inside the process: {parts['imports_in_process']:.2f} s")
    print(f"1-step run in a fresh process (first): {parts['first_run']:.2f} s; warm (same process): "
          f"median {statistics.median(parts['warm_runs']):.2f} s")
    print(f"  of which model+data build {parts['model_data_build'] * 1e3:.1f} ms, memory/FLOP probe "
          f"{parts['step_cost_probe'] * 1e3:.1f} ms, record write {parts['record_write'] * 1e3:.1f} ms")
    print(f"load average {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("walltime")
    w.add_argument("--repeats", type=int, default=3)
    w.add_argument("--suite", default="quick")
    w.add_argument("--modes", nargs="+", choices=list(MODES), default=None, help="default: all three")
    w.add_argument("overrides", nargs="*", help="key=value overrides for a shorter suite, e.g. max_epochs=1")
    sub.add_parser("overhead")
    args = parser.parse_args()
    walltime(args) if args.what == "walltime" else overhead(args)


if __name__ == "__main__":
    main()
