"""Sweep trials through wandb's agent: ``run_online`` creates the sweep (or joins one) and runs an agent
in this process; ``run_trial`` is one trial, the agent's sampled point as one planned run."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lrbench.suite.errors import UserError

from .sweep_file import ONLINE_TIMEOUT_S, Sweep
from .sweep_points import offline_points, point_from_config, sample_value, trial_configs


def _with_timeout(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """``fn()`` in a daemon thread; UserError when it neither returns nor raises within ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise UserError(f"could not {what} within {seconds:.0f} s (no network?); use --offline to run the sweep locally")
    if "error" in box:
        exc = box["error"]
        text = str(exc).strip().splitlines()
        raise UserError(f"could not {what}: {type(exc).__name__}{': ' + text[0] if text else ''}") from None
    return box.get("value")


def run_trial(sweep: Sweep, out_dir: Path | str, overrides: Mapping[str, Any] | None = None,
              args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One trial of an online sweep: the current wandb run's config (the agent's sampled point) plus
    ``args`` (``key=value``, what ``wandb agent`` passes through the file's command) -> one planned run.

    The run's record lands in ``out_dir`` like any other, and its metrics in the wandb run's summary.
    """
    import wandb

    from lrbench.suite.cli.plan import plan_configs
    from lrbench.suite.cli.tokens import parse_assignments
    from lrbench.suite.training import tracking
    from lrbench.suite.training.execute import execute_run

    own = wandb.run is None
    if own:  # started by `wandb agent` (the file's command): the agent's env names the sweep and the run
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE", "").lower()  # the agent's (online unless the env says otherwise)
        mode = mode if mode in ("online", "offline", "disabled") else "online"
        run = wandb.init(dir=str(out_dir), mode=mode,
                         settings=wandb.Settings(init_timeout=tracking.init_timeout(), console="off"))
    else:
        run = wandb.run
    try:
        point = {**point_from_config(dict(run.config)), **parse_assignments(args, "trial argument")}
        plan = plan_configs(trial_configs([point], {**dict(overrides or {}), "wandb": True}, sweep.source), out_dir)
        return [execute_run(config, plan.out_dir) for config in plan.configs]
    finally:
        if own:
            wandb.finish()


def run_online(sweep: Sweep, out_dir: Path | str, overrides: Mapping[str, Any] | None = None, *,
               count: int | None = None, sweep_id: str | None = None, project: str | None = None,
               entity: str | None = None) -> str:
    """Create the sweep on the W&B server (unless ``sweep_id`` joins one) and run an agent here."""
    from lrbench.suite.cli.plan import plan_configs
    from lrbench.suite.training import tracking

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        raise UserError(f"an online sweep needs the W&B server but WANDB_MODE={os.environ['WANDB_MODE']}; "
                        "use --offline to run the sweep locally")
    try:
        import wandb
    except ImportError:
        raise UserError("online sweeps need the wandb package; use --offline to run the sweep locally") from None
    if not tracking.has_api_key():
        raise UserError("an online sweep needs a W&B API key (WANDB_API_KEY or `wandb login`); use --offline "
                        "to run the sweep locally")
    # a trial's points must resolve: check the grid's first point (or one draw) before creating anything
    rng = random.Random(0)
    first = (offline_points(sweep)[:1] if sweep.method == "grid"
             else [{n: sample_value(spec, rng) for n, spec in sweep.parameters.items()}])
    plan_configs(trial_configs(first, overrides, sweep.source), out_dir)
    project = project or sweep.raw.get("project") or os.environ.get("WANDB_PROJECT") or tracking.DEFAULT_PROJECT
    entity = entity or sweep.raw.get("entity")
    if sweep_id is None:
        sweep_id = _with_timeout(lambda: wandb.sweep(sweep=dict(sweep.raw), project=project, entity=entity),
                                 ONLINE_TIMEOUT_S, "create the sweep on the W&B server")
    print(f"lrbench sweep: wandb sweep {sweep_id} ({sweep.method}, project {project}); "
          f"more agents: wandb agent {entity + '/' if entity else ''}{project}/{sweep_id}")
    wandb.agent(sweep_id, function=lambda: run_trial(sweep, out_dir, overrides), project=project, entity=entity,
                count=count)
    return str(sweep_id)
