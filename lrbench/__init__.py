"""lrbench: backpropagation against forward-only gradient estimators, benchmarked.

The project's packages live under this one namespace (their folders stay at the top of the checkout and
are mapped here by ``pyproject.toml``):

* ``lrbench.estimators`` — the gradient estimators behind one interface (torch only);
* ``lrbench.tasks`` — datasets, model families, task specs;
* ``lrbench.suite`` — the ``lrbench`` command line, Lightning training, results store, metrics;
* ``lrbench.reports`` — reports and paper figures from result files only (no torch).
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("lrbench")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
