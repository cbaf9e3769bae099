"""Small helpers shared by the bench measurements."""

from __future__ import annotations

from typing import Any


def build_estimator(name: str, options: dict[str, Any], missing: set[str]) -> Any | None:
    """``get_estimator(name, **options)``, or ``None`` (and ``name`` added to ``missing``) when no
    estimator of that name is installed. Bad options still raise: they are a bench bug."""
    from lrbench.estimators import ESTIMATORS, get_estimator
    from lrbench.estimators.registry import _load_builtin_estimators

    _load_builtin_estimators()
    if name not in ESTIMATORS:
        missing.add(name)
        return None
    return get_estimator(name, **options)
