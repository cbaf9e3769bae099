"""A synthetic results folder shaped like docs/RESULTS.md, for the report and paper tests.

``write_synthetic_results(root)`` writes ``root/runs/*.json``: three tasks; bp, ulr (copies × three
variance-reduction settings), alr, xconv (probes × batch), a ViT depth sweep; several seeds; history, memory, throughput,
gradient quality and robustness; one failed and one diverged run. The numbers follow simple laws
(cosine grows with copies, memory with copies/probes) so figures look like real ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

CONFIG_DEFAULTS: dict[str, Any] = {
    "model_options": {}, "optimizer": "adam", "lr": 0.001, "weight_decay": 0.0, "lr_schedule": "none",
    "batch_size": 64, "max_epochs": 3, "max_steps": None, "train_subset": None, "accelerator": "cpu",
    "devices": 1, "strategy": "auto", "grad_quality_every": 50, "robustness": None, "init_from": None,
}
VERSIONS = {"lrbench": "0.1.0", "python": "3.11.7", "torch": "2.5.1", "pytorch_lightning": "2.4.0",
            "torchvision": "0.20.1", "numpy": "2.1.0"}
HARDWARE = {"device_type": "cpu", "device_name": "x86_64 (2 cores)", "device_count": 1, "world_size": 1}


def run_id(config: dict[str, Any]) -> str:
    """``task__estimator__hash10__sSEED`` as docs/RESULTS.md defines it."""
    payload = {k: v for k, v in config.items() if k not in ("seed", "out", "data_dir", "progress", "wandb")}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"{config['task']}__{config['estimator']}__{digest}__s{config['seed']}"


def make_record(task: str, estimator: str, options: dict[str, Any], seed: int, *, quality: float,
                status: str = "completed", message: str | None = None, memory: float = 1e6,
                robust: bool = False, **config_overrides: Any) -> dict[str, Any]:
    """One run record. ``quality`` in (0, 1] sets the accuracy level and the gradient cosine."""
    rng = random.Random(f"{task}/{estimator}/{json.dumps(options, sort_keys=True)}/{seed}/{config_overrides}")
    config = {"task": task, "estimator": estimator, "estimator_options": options, **CONFIG_DEFAULTS,
              **config_overrides, "seed": seed}
    epochs = config["max_epochs"]
    final = min(0.995, 0.55 + 0.42 * quality + rng.gauss(0, 0.01))
    history = []
    for epoch in range(epochs):
        frac = (epoch + 1) / epochs
        acc = final - (final - 0.2) * math.exp(-3 * frac) * 0.8 + rng.gauss(0, 0.005)
        history.append({"epoch": epoch, "step": 28 * (epoch + 1), "train_loss": 2.3 * (1 - acc) + 0.05,
                        "val_accuracy": round(acc, 4), "test_accuracy": round(acc - 0.01, 4),
                        "wall_time": round((epoch + 1) * (2.0 + 4 * (1 - quality)) * (1 + rng.uniform(0, .1)), 3)})
    target = 0.9
    hit = next((h for h in history if h["val_accuracy"] >= target), None)
    gradient = None
    if estimator != "bp":
        cos = max(0.02, min(0.999, quality + rng.gauss(0, 0.02)))
        gradient = {"every": 50, "points": [{"step": s, "cosine": cos, "relative_error": math.sqrt(1 / cos**2 - 1),
                                             "norm_ratio": 1 / cos} for s in (0, 50)],
                    "mean_cosine": cos, "mean_relative_error": math.sqrt(1 / cos**2 - 1), "mean_norm_ratio": 1 / cos}
    robustness = None
    if robust:
        drop = 1.5 - 0.5 * quality
        robustness = {
            "subset_size": 500, "subset_seed": 0, "settings": {"fgsm": {}, "transfer_source": "digits-mlp__bp"},
            "clean": final,
            "fgsm": {str(e): max(0.0, final - drop * e * 3) for e in (0.05, 0.1, 0.2)},
            "pgd_linf": {str(e): max(0.0, final - drop * e * 4) for e in (0.05, 0.1, 0.2)},
            "pgd_l2": {"0.5": final - 0.2},
            "transfer_fgsm": {str(e): max(0.0, final - e * 2.5) for e in (0.05, 0.13, 0.2)},
            "transfer_pgd": None,
            "corruptions": {name: {str(s): max(0.0, final - k * s) for s in range(1, 6)}
                            for name, k in (("gaussian_noise", 0.03), ("impulse_noise", 0.05),
                                            ("contrast", 0.02), ("gaussian_blur", 0.04))},
        }
    metrics = {
        "val_accuracy_final": history[-1]["val_accuracy"], "val_accuracy_best": max(h["val_accuracy"] for h in history),
        "test_accuracy_final": history[-1]["test_accuracy"], "test_accuracy_best": history[-1]["test_accuracy"],
        "train_loss_final": history[-1]["train_loss"],
        "time_to_target": {"target": target, "metric": "val_accuracy",
                           "seconds": hit["wall_time"] if hit else None, "steps": hit["step"] if hit else None},
        "history": history,
        "peak_memory_bytes": {"definition": "live_tensor_bytes", "per_device": [int(memory)], "max": int(memory),
                              "cuda_allocator_peak": None},
        "throughput": {"samples_per_second": 64e5 / memory, "step_time_seconds": memory / 1e8, "warmup_steps": 5,
                       "timed_steps": 100, "forward_passes_per_step": 1.0 + options.get("copies", 0),
                       "flops_per_step": None},
        "gradient_quality": gradient,
        "robustness": robustness,
    }
    if status == "failed":
        metrics = {k: None for k in metrics}
    elif status == "diverged":
        metrics["history"] = history[:1]
    return {"schema_version": 1, "run_id": run_id(config), "config": config, "seed": seed,
            "git_commit": "0123456789abcdef0123456789abcdef01234567", "versions": VERSIONS, "hardware": HARDWARE,
            "started_at": "2026-11-21T05:00:00+00:00", "finished_at": "2026-11-21T05:01:10+00:00",
            "status": status, "message": message, "metrics": metrics}


def synthetic_records() -> list[dict[str, Any]]:
    """The records of the synthetic results folder."""
    records = []
    for task in ("digits-mlp", "digits-cnn"):
        for seed in (0, 1, 2):
            records.append(make_record(task, "bp", {}, seed, quality=1.0, memory=2e6, robust=task == "digits-mlp"))
    techniques = {"plain": {"baseline": "none"}, "clean": {"baseline": "clean"},
                  "clean+anti": {"baseline": "clean", "antithetic": True}}
    for name, technique in techniques.items():
        for copies in (4, 16, 64):
            for seed in (0, 1):
                quality = {"plain": 0.3, "clean": 0.55, "clean+anti": 0.5}[name] * (copies / 64) ** 0.35
                records.append(make_record("digits-mlp", "ulr", {"copies": copies, "sigma": 0.01, **technique},
                                           seed, quality=quality, memory=1e6 + copies * 5e4,
                                           robust=copies == 64 and name == "clean"))
    for copies in (16, 64):
        for seed in (0, 1):
            records.append(make_record("digits-mlp", "alr", {"copies": copies, "sigma": 0.01, "baseline": "clean"},
                                       seed, quality=0.35 * (copies / 64) ** 0.35, memory=1e6 + copies * 8e3,
                                       robust=copies == 64))
    for probes in (2, 8, 32):
        for batch in (32, 64):
            records.append(make_record("digits-cnn", "xconv", {"probes": probes}, 0, quality=(probes / 32) ** 0.3,
                                       memory=1e6 + probes * batch * 200, batch_size=batch))
    for depth in (1, 2, 4):  # a depth sweep: memory and throughput against depth
        for estimator, options in (("bp", {}), ("ulr", {"copies": 16, "sigma": 0.01, "baseline": "clean"})):
            records.append(make_record("digits-vit", estimator, options, 0, quality=0.9 if estimator == "bp" else 0.5,
                                       memory=(1.0 + depth) * (4e5 if estimator == "bp" else 3e5),
                                       model_options={"depth": depth, "dim": 32}))
    records.append(make_record("digits-cnn", "ulr", {"copies": 16, "sigma": 0.01, "baseline": "clean"}, 0,
                               quality=0.4, status="failed",
                               message="UnsupportedModuleError: module '3' (MaxPool3d) is not supported"))
    records.append(make_record("digits-mlp", "ulr", {"copies": 4, "sigma": 1.0, "baseline": "none"}, 0,
                               quality=0.1, status="diverged", message="loss is nan at step 17"))
    return records


def write_synthetic_results(root: Path) -> Path:
    """Write the synthetic records to ``root/runs/<run_id>.json``; returns ``root``."""
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for record in synthetic_records():
        (runs / f"{record['run_id']}.json").write_text(json.dumps(record, indent=1))
    return root


def test_synthetic_records_follow_the_schema() -> None:
    records = synthetic_records()
    ids = [r["run_id"] for r in records]
    assert len(ids) == len(set(ids)), "run ids must be unique"
    required = {"schema_version", "run_id", "config", "seed", "git_commit", "versions", "hardware", "started_at",
                "finished_at", "status", "message", "metrics"}
    assert all(required <= set(r) for r in records)
    assert {r["status"] for r in records} == {"completed", "failed", "diverged"}
