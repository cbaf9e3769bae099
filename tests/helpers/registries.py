"""Tests that load plugins register estimators, tasks and papers (and the API discovers installed entry
points): ``isolated_registries`` gives every test the registries back as they were."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from lrbench import plugins
from lrbench.estimators.registry import ESTIMATORS, _load_builtin_estimators
from lrbench.reports.paper_spec import REGISTERED_SPECS
from lrbench.tasks import DATASETS, TASKS


@pytest.fixture
def isolated_registries() -> Iterator[None]:
    _load_builtin_estimators()
    saved = [(registry, dict(registry)) for registry in
             (ESTIMATORS, TASKS, DATASETS, REGISTERED_SPECS, plugins.ORIGINS, plugins.LOADED)]
    path, modules, discovered = list(sys.path), set(sys.modules), plugins._entry_points_done
    yield
    plugins._entry_points_done = discovered
    for registry, content in saved:
        registry.clear()
        registry.update(content)
    sys.path[:] = path
    for name in set(sys.modules) - modules:  # the plugin modules a test imported (not installed packages)
        path = str(getattr(sys.modules[name], "__file__", None) or "site-packages")
        if "site-packages" not in path and not name.startswith("lrbench"):
            del sys.modules[name]
