"""Name -> estimator class, and module type -> per-module rule (BackPACK-style registries)."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Estimator, EstimatorError

ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise AssertionError(f"{cls.__qualname__} declares no name")
    ESTIMATORS[cls.name] = cls
    return cls


def get_estimator(name: str, **opts: Any) -> Estimator:
    """Build the estimator registered as ``name`` with validated options."""
    _load_builtin_estimators()
    if name not in ESTIMATORS:
        raise EstimatorError(f"unknown estimator '{name}'; valid estimators: {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[name](**opts)


def estimator_class(name: str) -> type[Estimator]:
    _load_builtin_estimators()
    if name not in ESTIMATORS:
        raise EstimatorError(f"unknown estimator '{name}'; valid estimators: {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[name]


def list_estimators() -> list[dict[str, Any]]:
    """Every registered estimator with its options, defaults and one-line description."""
    _load_builtin_estimators()
    return [ESTIMATORS[n].describe() for n in sorted(ESTIMATORS)]


_BUILTIN_MODULES = ("bp", "ulr", "alr", "xconv", "es", "spsa", "fg", "block_lr", "noisy_bp")


def _load_builtin_estimators() -> None:
    """Import the estimator modules shipped with lrbench so their ``register_estimator`` runs (imported
    on first use, not at package import: ``base``/``registry`` stay importable without the estimators)."""
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{mod}")
