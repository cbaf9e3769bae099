"""``lrbench doctor --device cuda|cpu``: every device code path in one command, one JSON summary.

On CUDA (≤ 5 minutes on one GPU) the checks are, in order:

* ``suite_jobs``     the quick suite on the device with ``--jobs 2`` (two worker processes sharing the
                     GPU through the pool's CUDA_VISIBLE_DEVICES path): every run completed, on the device;
* ``memory``         per run of that suite, the suite's memory definition (``live_tensor_bytes``) against
                     the CUDA allocator's peak of the same step (``cuda_allocator_peak``, from
                     ``torch.cuda.max_memory_allocated``): |allocator/live − 1| ≤ 10 % for every run;
* ``bench``          ``lrbench bench --device cuda`` (its ratios; its own allocator check of the LR depth sweep);
* ``alr_streams``    ALR with ``concurrent=true`` (one CUDA stream per module) equals the sequential ALR
                     gradient (same seed) to float32 rounding (max |Δ| ≤ 1e-5·max|g|);
* ``xconv_cudnn``    XConv's sketched convolutions (cuDNN): the mean of 16 seeded XConv gradients points
                     along BP's (cosine ≥ 0.5; the estimator is unbiased);
* ``attacks_cudnn``  FGSM and PGD-L∞ on the device against the same attacks on the CPU for the same model
                     and inputs: ≥ 95 % of the adversarial predictions agree;
* ``robustness``     one training run with robustness evaluation on the device (completed, clean ≥ 0.5).

``--device cpu`` runs the same checks with CPU-sized budgets (the quick suite at 2 steps per run, the
quick bench at one round) so that the command itself is tested; the memory check has no allocator to
compare with there and reports ``skipped``. Without a CUDA device ``--device cuda`` is one line, exit 2.
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lrbench.suite.errors import UserError

CPU_SUITE_OVERRIDES = {"max_steps": 2, "max_epochs": None, "train_subset": 128, "grad_quality_every": None}
MEMORY_TOLERANCE = 0.10


def _device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("no CUDA device is present on this machine (torch.cuda.is_available() is False); "
                        "'lrbench doctor --device cpu' runs the CPU versions of the checks")
    return torch.device(name)


def _accelerator(device: torch.device) -> str:
    return "gpu" if device.type == "cuda" else "cpu"


# --------------------------------------------------------------------------- checks
def check_suite_jobs(device: torch.device, work: Path, state: dict[str, Any]) -> dict[str, Any]:
    from lrbench.suite.training.execute import execute

    from .plan import plan_suite

    overrides = {"accelerator": _accelerator(device), "progress": False}
    if device.type == "cpu":
        overrides.update(CPU_SUITE_OVERRIDES)
    plan = plan_suite("quick", overrides, out_dir=work / "suite")
    configs = plan.configs
    result = execute(plan, progress=False, jobs=2)
    records = result.records
    state["records"] = records
    statuses = {r["run_id"]: r["status"] for r in records}
    on_device = all(r["hardware"]["device_type"] == device.type for r in records)
    workers = sorted({r["hardware"]["worker"]["pid"] for r in records})
    ok = len(records) == len(configs) and all(s == "completed" for s in statuses.values()) and on_device
    return {"ok": ok, "runs": len(configs), "completed": sum(s == "completed" for s in statuses.values()),
            "worker_processes": len(workers), "on_device": on_device,
            "failed": {k: v for k, v in statuses.items() if v != "completed"}}


def check_memory(device: torch.device, work: Path, state: dict[str, Any]) -> dict[str, Any]:
    if device.type != "cuda":
        return {"ok": None, "skipped": "no CUDA allocator on CPU (live_tensor_bytes is the only measure)"}
    rows = []
    for record in state.get("records", []):
        memory = record["metrics"].get("peak_memory_bytes") or {}
        live, allocator = memory.get("max"), memory.get("cuda_allocator_peak")
        if live and allocator:
            rows.append({"run_id": record["run_id"], "live_tensor_bytes": live, "cuda_allocator_peak": allocator,
                         "ratio": allocator / live})
    worst = max((abs(r["ratio"] - 1) for r in rows), default=None)
    return {"ok": bool(rows) and worst is not None and worst <= MEMORY_TOLERANCE, "tolerance": MEMORY_TOLERANCE,
            "worst_relative_gap": worst, "runs": rows}


def check_bench(device: torch.device, work: Path, state: dict[str, Any]) -> dict[str, Any]:
    from lrbench.suite.bench import BenchConfig, run_bench

    if device.type == "cuda":
        cfg = BenchConfig(device="cuda", threads=torch.get_num_threads())
    else:
        cfg = BenchConfig.quick_config(device="cpu", threads=1, rounds=1, mem_depths=(2, 4), harness_steps=4,
                                       harness_rounds=1, xconv_image=32)
    record = run_bench(cfg)
    lr_memory = record["details"].get("lr_memory", {})
    allocator = lr_memory.get("cuda_allocator_check") if isinstance(lr_memory, dict) else None
    ok = all(v is not None for v in record["ratios"].values()) and (allocator is None or bool(allocator["within"]))
    if device.type == "cuda":
        ok = ok and allocator is not None
    return {"ok": ok, "ratios": record["ratios"], "targets": record["targets"], "allocator_check": allocator,
            "seconds": record["total_seconds"]}


def _cnn_batch(device: torch.device, batch: int = 32) -> tuple[Any, torch.nn.Module, torch.Tensor, torch.Tensor]:
    from lrbench.tasks import get_task

    spec = get_task("digits-cnn")
    torch.manual_seed(0)
    model = spec.build_model().to(device)
    data = spec.load_data(device=device)
    x, y = data.train
    return spec, model, x[:batch], y[:batch]


def _grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def check_alr_streams(device: torch.device, work: Path, state: dict[str, Any]) -> dict[str, Any]:
    from lrbench.estimators import get_estimator

    spec, model, x, y = _cnn_batch(device)
    out = {}
    for concurrent in (False, True):
        est = get_estimator("alr", copies=8, seed=3, concurrent=concurrent, injection="layerwise")
        est.estimate(model, spec.loss_fn, x, y)
        out[concurrent] = _grads(model).clone()
    gap = float((out[True] - out[False]).abs().max() / out[False].abs().max().clamp_min(1e-30))
    return {"ok": gap <= 1e-5, "max_relative_difference": gap}


def check_xconv(device: torch.device, work: Path, state: dict[str, Any]) -> dict[str, Any]:
    from lrbench.estimators import get_estimator

    spec, model, x, y = _cnn_batch(device)
    get_estimator("bp").estimate(model, spec.loss_fn, x, y)
    bp = _grads(model).clone()
    mean = torch.zeros_like(bp)
    seeds = 16
    for seed in range(seeds):
        get_estimator("xconv", probes=16, seed=seed).estimate(model, spec.loss_fn, x, y)
        mean += _grads(model) / seeds
    cosine = float(torch.nn.functional.cosine_similarity(mean, bp, dim=0))
    return {"ok": cosine >= 0.5, "cosine_mean_xconv_to_bp": cosine, "seeds": seeds,
            "cudnn": bool(torch.backends.cudnn.enabled and device.type == "cuda")}


def check_attacks(device: torch.device, work: Path, state: dict[str, Any]) -> dict[str, Any]:
    from lrbench.suite.training.robustness_eval.attacks import fgsm, pgd

    spec, model, x, y = _cnn_batch(device, batch=128)
    cpu_model = spec.build_model()
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    agreement = {}
    for name, attack in (("fgsm", lambda m, a, b: fgsm(m, a, b, eps=0.1)),
                         ("pgd_linf", lambda m, a, b: pgd(m, a, b, eps=0.1, steps=5, random_start=False))):
        here = model.eval()(attack(model, x, y)).argmax(1).cpu()
        there = cpu_model.eval()(attack(cpu_model, x.cpu(), y.cpu())).argmax(1)
        agreement[name] = float((here == there).float().mean())
    return {"ok": all(v >= 0.95 for v in agreement.values()), "prediction_agreement_with_cpu": agreement}


def check_robustness(device: torch.device, work: Path, state: dict[str, Any]) -> dict[str, Any]:
    from lrbench.suite.training.runner import run_one

    from .suite_files import expand_suite

    settings = {"subset_size": 64, "pgd_linf": {"steps": 2}, "pgd_l2": {"steps": 2}, "severities": [1],
                "corruptions": ["gaussian_noise"]}
    [config] = expand_suite({"runs": [{"task": "digits-cnn", "estimator": "bp", "max_epochs": 2}]},
                            {"accelerator": _accelerator(device), "progress": False, "robustness": settings})
    record = run_one(config, work / "robustness")
    clean = (record["metrics"].get("robustness") or {}).get("clean")
    return {"ok": record["status"] == "completed" and clean is not None and clean >= 0.5, "status": record["status"],
            "message": record["message"], "clean": clean, "device": record["hardware"]["device_type"]}


CHECKS: dict[str, Callable[[torch.device, Path, dict[str, Any]], dict[str, Any]]] = {
    "suite_jobs": check_suite_jobs, "memory": check_memory, "bench": check_bench, "alr_streams": check_alr_streams,
    "xconv_cudnn": check_xconv, "attacks_cudnn": check_attacks, "robustness": check_robustness}


def run_doctor(device_name: str, out: Path | None = None, skip: tuple[str, ...] = (),
               progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every check not in ``skip``; the summary (also written to ``out`` when given). A check that raises
    is recorded as failed with its error; the others still run."""
    device = _device(device_name)
    unknown = sorted(set(skip) - set(CHECKS))
    if unknown:
        raise UserError(f"--skip {unknown[0]!r}: valid checks are {', '.join(CHECKS)}")
    summary: dict[str, Any] = {"device": str(device), "device_name": torch.cuda.get_device_name(device)
                               if device.type == "cuda" else "cpu", "torch": torch.__version__, "checks": {}}
    state: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lrbench-doctor-") as tmp:
        for name, check in CHECKS.items():
            if name in skip:
                continue
            t0 = time.perf_counter()
            try:
                result = check(device, Path(tmp), state)
            except Exception as exc:  # noqa: BLE001 - a broken path is a failed check, not a crash
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                          "traceback": traceback.format_exc()}
            result["seconds"] = round(time.perf_counter() - t0, 2)
            summary["checks"][name] = result
            if progress:
                progress(name, result)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["ok"] = all(c["ok"] is not False for c in summary["checks"].values())
    if out is not None:
        Path(out).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
