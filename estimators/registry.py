"""Name -> estimator class, and module type -> per-module rule (BackPACK-style registries)."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Estimator, EstimatorError

ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make ``cls`` available under ``cls.name``.

    The class is validated first (``validation.validate_estimator_class``); a name already taken by another
    class is refused (re-registering the same class, e.g. when its module is reloaded, is fine). Both raise
    :class:`EstimatorError` with one line naming the class and the fix.
    """
    from .validation import validate_estimator_class

    validate_estimator_class(cls)
    if cls.name not in ESTIMATORS and cls.__module__.split(".")[:2] != ["lrbench", "estimators"]:
        _load_builtin_estimators()  # a plugin registering first must still clash with a built-in name
    taken = ESTIMATORS.get(cls.name)
    if taken is not None and _qualified(taken) != _qualified(cls):
        raise EstimatorError(f"estimator name '{cls.name}' of {_qualified(cls)} is already taken by "
                             f"{_qualified(taken)}; give the new class another name")
    ESTIMATORS[cls.name] = cls
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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
