"""Shared pytest setup: deterministic, small, CPU-only."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
