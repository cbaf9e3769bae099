"""``lrbench robustness RUN_DIR|CHECKPOINT``: white-box, transfer and corruption accuracies of trained models.

* ``RUN_DIR`` (a results folder): every run with a record ``runs/<id>.json`` (status completed) and a
  checkpoint ``checkpoints/<id>.pt`` is evaluated and the result is written into its record under
  ``metrics.robustness`` (atomically: temp file + ``os.replace``; the record's config is not changed).
  Runs that already have it are skipped unless ``--force``. The transfer surrogate is ``--surrogate`` (a
  checkpoint or a run id of the folder; used for the runs of its task) or, by default, per task the
  completed BP run of that task in the folder (same model options, lowest seed; that run is then its own
  surrogate, so its transfer numbers equal its white-box ones); without one, transfer_* stay null.
  Test subset and corruption noise are the same for every run (``--subset-seed``); the PGD random starts
  are seeded by each run's seed (``--seed`` overrides).
* ``CHECKPOINT`` (one ``.pt`` file): the results are printed (``--json``: one JSON object); nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lrbench.suite.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness", help="white-box / transfer / corruption accuracies of trained models",
        description="Evaluate robustness (FGSM, PGD-L∞, PGD-L2, transfer from a BP surrogate, natural "
                    "corruptions) of every checkpointed run in a results folder (written into each run's "
                    "JSON under metrics.robustness) or of one checkpoint (printed).")
    p.add_argument("target", metavar="RUN_DIR|CHECKPOINT", help="results folder or checkpoint file (.pt)")
    p.add_argument("--task", default=None, help="task of the checkpoint (default: from its run record)")
    p.add_argument("--surrogate", default=None, metavar="CKPT|RUN_ID",
                   help="BP-trained surrogate for the transfer attacks (default in a folder: its BP run)")
    p.add_argument("--subset", type=int, default=1000, help="test examples, seeded subset (default: 1000)")
    p.add_argument("--eps", type=float, nargs="+", default=None, metavar="E",
                   help="L∞ ε grid for FGSM, PGD-L∞ and transfer (default: per dataset)")
    p.add_argument("--eps-l2", type=float, nargs="+", default=None, metavar="E",
                   help="L2 ε grid for PGD-L2 (default: per dataset)")
    p.add_argument("--steps", type=int, default=None, help="PGD steps (default: 20)")
    p.add_argument("--eot-samples", type=int, default=None,
                   help="gradient samples per step for models with test-time noise (default: 1)")
    p.add_argument("--no-corruptions", action="store_true", help="skip the natural corruptions")
    p.add_argument("--subset-seed", type=int, default=0,
                   help="seed of the test subset and the corruption noise, shared by all models (default: 0)")
    p.add_argument("--seed", type=int, default=None, help="seed of the PGD random starts (default: the run's)")
    p.add_argument("--data-dir", default=None, help="data root (default: the run's, $LRBENCH_DATA, ~/.cache)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--force", action="store_true", help="recompute runs that already have robustness metrics")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``settings`` argument of robustness_metrics from the command-line flags (only those given)."""
    settings: dict[str, Any] = {"subset_size": args.subset, "subset_seed": args.subset_seed}
    if args.subset < 1:
        raise UserError(f"--subset must be >= 1, got {args.subset}")
    if args.eps is not None:
        settings["eps_linf"] = args.eps
    if args.eps_l2 is not None:
        settings["eps_l2"] = args.eps_l2
    if args.steps is not None:
        settings["pgd_linf"] = {"steps": args.steps}
        settings["pgd_l2"] = {"steps": args.steps}
    if args.eot_samples is not None:
        settings["eot_samples"] = args.eot_samples
    if args.no_corruptions:
        settings["corruptions"] = []
    return settings


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device '{name}'; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda given but no CUDA device is available")
    return device


def evaluate_checkpoint(path: Path, args: argparse.Namespace, surrogate_path: Path | None,
                        settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, metrics.robustness) of one checkpoint."""
    from lrbench.suite.training.robustness_eval import robustness_metrics
    from lrbench.suite.training.robustness_eval.checkpoints import load_checkpoint_model
    from lrbench.tasks import get_task

    device = _device(args.device)
    model, config = load_checkpoint_model(path, task=args.task, device=device)
    surrogate = None
    settings = dict(settings)
    if surrogate_path is not None:
        surrogate, surrogate_config = load_checkpoint_model(surrogate_path, device=device,
                                                            fallback_task=config["task"])
        if surrogate_config["task"] != config["task"]:
            raise UserError(f"surrogate {surrogate_path} is for task '{surrogate_config['task']}', the model for "
                            f"'{config['task']}'")
        settings["transfer_source"] = surrogate_config["run_id"]
    spec = get_task(config["task"])
    run_seed = int(config.get("seed") or 0)
    seed = args.seed if args.seed is not None else run_seed
    data = spec.load_data(data_dir=args.data_dir or config.get("data_dir"), device="cpu")
    x_test, y_test = data.test
    result = robustness_metrics(model, x_test, y_test, dataset=spec.dataset, settings=settings,
                                surrogate=surrogate, seed=seed)
    return config, result


def _resolve_surrogate(value: str | None, base: Path) -> Path | None:
    """--surrogate as a checkpoint file, or a run id looked up in ``base/checkpoints``."""
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        return path
    by_id = base / "checkpoints" / f"{value}.pt"
    if by_id.is_file():
        return by_id
    raise UserError(f"--surrogate '{value}' is neither a checkpoint file nor a run id with a checkpoint in "
                    f"{base / 'checkpoints'}")


def default_surrogates(records: list[dict[str, Any]], run_dir: Path) -> dict[tuple[str, str], Path]:
    """(task, model_options JSON) → checkpoint of the completed BP run with the lowest (seed, run_id)."""
    best: dict[tuple[str, str], tuple[tuple[int, str], Path]] = {}
    for record in records:
        config = record.get("config") or {}
        ckpt = run_dir / "checkpoints" / f"{record['run_id']}.pt"
        if config.get("estimator") != "bp" or record.get("status") != "completed" or not ckpt.is_file():
            continue
        key = (config.get("task"), json.dumps(config.get("model_options") or {}, sort_keys=True))
        rank = (int(record.get("seed") or 0), record["run_id"])
        if key not in best or rank < best[key][0]:
            best[key] = (rank, ckpt)
    return {key: path for key, (_, path) in best.items()}


def _read_records(run_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted((run_dir / "runs").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            print(f"skipping unreadable {path}", file=sys.stderr)
            continue
        if isinstance(record, dict) and "run_id" in record:
            records.append(record)
    return records


def run_folder(run_dir: Path, args: argparse.Namespace, settings: dict[str, Any]) -> int:
    from lrbench.suite.training.results_store import write_record

    records = _read_records(run_dir)
    if not records:
        raise UserError(f"no run records in {run_dir / 'runs'}")
    from lrbench.suite.training.robustness_eval.checkpoints import run_record_for

    explicit = _resolve_surrogate(args.surrogate, run_dir)
    explicit_record = run_record_for(explicit) if explicit is not None else None
    explicit_task = ((explicit_record or {}).get("config") or {}).get("task")
    surrogates = default_surrogates(records, run_dir)
    summary: list[dict[str, Any]] = []
    failures = 0
    for record in records:
        rid = record["run_id"]
        ckpt = run_dir / "checkpoints" / f"{rid}.pt"
        metrics = record.setdefault("metrics", {}) or {}
        if record.get("status") != "completed" or not ckpt.is_file():
            summary.append({"run_id": rid, "status": "skipped (not completed or no checkpoint)"})
            continue
        if metrics.get("robustness") is not None and not args.force:
            summary.append({"run_id": rid, "status": "skipped (has robustness; --force to redo)"})
            continue
        config = record.get("config") or {}
        key = (config.get("task"), json.dumps(config.get("model_options") or {}, sort_keys=True))
        # --surrogate serves the runs of its task (every run if its task is unknown); others get the default
        use_explicit = explicit is not None and explicit_task in (None, config.get("task"))
        surrogate = explicit if use_explicit else surrogates.get(key)
        try:
            _, result = evaluate_checkpoint(ckpt, args, surrogate, settings)
        except UserError as exc:
            failures += 1
            summary.append({"run_id": rid, "status": f"error: {exc}"})
            print(f"lrbench: error: {rid}: {exc}", file=sys.stderr)
            continue
        metrics["robustness"] = result
        record["metrics"] = metrics
        write_record(run_dir, record)
        summary.append({"run_id": rid, "status": "evaluated", "robustness": result})
        if not args.json:
            _print_result(rid, result)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for item in summary:
            if item["status"] != "evaluated":
                print(f"{item['run_id']}: {item['status']}")
    return 1 if failures else 0


def _print_result(title: str, result: dict[str, Any]) -> None:
    print(f"{title}: clean {result['clean']:.4f} on {result['subset_size']} test examples "
          f"(subset seed {result['subset_seed']}; transfer source {result['settings']['transfer_source']})")
    for name in ("fgsm", "pgd_linf", "pgd_l2", "transfer_fgsm", "transfer_pgd"):
        values = result[name]
        if values is None:
            continue
        cells = "  ".join(f"ε={float(e):.4g}: {acc:.4f}" for e, acc in values.items())
        print(f"  {name:14s} {cells}")
    for name, by_severity in result["corruptions"].items():
        cells = "  ".join(f"s{s}: {acc:.4f}" for s, acc in by_severity.items())
        print(f"  {name:14s} {cells}")


def run(args: argparse.Namespace) -> int:
    target = Path(args.target)
    settings = settings_from_args(args)
    if target.is_dir():
        if not (target / "runs").is_dir():
            raise UserError(f"{target} is not a results folder (no runs/ inside) and not a checkpoint file")
        return run_folder(target, args, settings)
    if not target.is_file():
        raise UserError(f"no such results folder or checkpoint: {target}")
    surrogate = _resolve_surrogate(args.surrogate, target.parent.parent)
    config, result = evaluate_checkpoint(target, args, surrogate, settings)
    if args.json:
        json.dump({"checkpoint": str(target), "task": config["task"], "robustness": result}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_result(f"{target} ({config['task']})", result)
    return 0
