"""Rebuild a trained model from a run checkpoint (for ``lrbench robustness`` and transfer surrogates).

A checkpoint ``DIR/checkpoints/<run_id>.pt`` is read with ``torch.load(weights_only=True)`` and may be a
plain ``state_dict`` or a dict holding one under ``state_dict`` / ``model_state_dict`` / ``model`` (keys with
a Lightning ``model.`` prefix are accepted). The task and model options come, in order, from the explicit
arguments, a ``config`` stored in the checkpoint, or the run record ``DIR/runs/<run_id>.json`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrbench.suite.errors import UserError

_STATE_KEYS = ("state_dict", "model_state_dict", "model")


def run_record_for(checkpoint: Path) -> dict[str, Any] | None:
    """The record ``DIR/runs/<stem>.json`` of ``DIR/checkpoints/<stem>.pt``, or None."""
    path = checkpoint.parent.parent / "runs" / f"{checkpoint.stem}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _state_dict(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(payload, dict):
        for key in _STATE_KEYS:
            if isinstance(payload.get(key), dict):
                return payload[key]
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            return payload
    raise UserError(f"checkpoint {path} holds no model state_dict (expected a state_dict or a dict with one of "
                    f"{', '.join(_STATE_KEYS)})")


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    wanted = set(model.state_dict())
    for prefix in ("", "model.", "module.", "model.module."):
        candidate = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if set(candidate) == wanted:
            model.load_state_dict(candidate)
            return
    missing = sorted(wanted - set(state))[:3]
    raise UserError(f"checkpoint {path} does not fit the task's model (missing e.g. {', '.join(missing)}); "
                    "check --task and the model options")


def load_checkpoint_model(path: str | Path, *, task: str | None = None, model_options: dict | None = None,
                          device: str | torch.device = "cpu",
                          fallback_task: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on ``device``, config) where config has at least ``task`` and ``model_options``
    (and ``seed``, ``data_dir``, ``run_id`` when the checkpoint or its run record knows them).
    ``task`` overrides what the checkpoint says; ``fallback_task`` is used only when it says nothing."""
    from lrbench.tasks import get_task

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint file {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    record = run_record_for(path)
    config: dict[str, Any] = {}
    if record is not None:
        config.update(record.get("config") or {})
        config["run_id"] = record.get("run_id", path.stem)
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        config.update(payload["config"])
    if task is not None:
        if config.get("task") not in (None, task):
            config["model_options"] = {}  # another task: its model options do not apply
        config["task"] = task
    if model_options is not None:
        config["model_options"] = model_options
    if not config.get("task"):
        config["task"] = fallback_task
    if not config.get("task"):
        raise UserError(f"cannot tell the task of {path} (no run record beside it); give --task")
    config.setdefault("model_options", {})
    config.setdefault("run_id", path.stem)
    model = get_task(config["task"]).build_model(**config["model_options"])
    _load_into(model, _state_dict(payload, path), path)
    return model.to(device).eval(), config
