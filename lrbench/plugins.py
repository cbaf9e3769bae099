"""Plugins: estimators, tasks (and datasets) and paper specs from outside lrbench, and where each came from.

Three ways in, all ending in the registries' own ``register_*`` calls:

* **entry points** of installed packages, groups ``lrbench.estimators``, ``lrbench.tasks``,
  ``lrbench.papers`` (``[project.entry-points."lrbench.estimators"] dfa = "lrbench_dfa.estimator:DFA"``).
  The object an entry point names is registered by its kind: an ``Estimator`` subclass, a ``TaskSpec``
  (or ``DatasetInfo``), a paper-spec YAML path, a list of those, a function returning them, or a module
  whose import registered things itself. Discovered once per process by :func:`load_entry_points`;
  a broken one is *skipped with a one-line warning* (it must not take the built-ins down with it).
* ``--plugin MODULE`` on the command line (a module name, or a ``.py`` file) and
* ``plugins: [MODULE, ...]`` in a suite file (names resolved next to the suite file first): importing the
  module runs its registration calls. These are explicit requests, so a failure is a
  :class:`PluginError` (one line, exit 2).

A plugin that fails to import, takes a name already registered, or registers something malformed is
rolled back (nothing it registered stays) and reported in one line naming the plugin and the fix.
:func:`origin` says where a registered name came from (``built-in``, ``entry point DIST VERSION``,
``--plugin MODULE``, ``suite FILE``); ``lrbench list`` shows it.

This module imports no torch itself; loading a plugin imports whatever the plugin needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from lrbench.suite.errors import UserError

GROUPS = ("lrbench.estimators", "lrbench.tasks", "lrbench.papers")
BUILTIN = "built-in"

#: (kind, name) -> where it came from; kinds: estimator, task, dataset, paper. Absent: built-in.
ORIGINS: dict[tuple[str, str], str] = {}
#: module name -> the request that imported it (each plugin module is imported once per process)
LOADED: dict[str, str] = {}
_entry_points_done = False
_entry_point_warnings: list[str] = []


class PluginError(UserError):
    """An explicitly requested plugin (``--plugin``, a suite's ``plugins:``) could not be loaded."""


# --------------------------------------------------------------------------- registries
def _registries() -> dict[str, Any]:
    """kind -> the registry mapping (built-ins loaded first, so that a plugin's name clash is seen)."""
    from lrbench.estimators.registry import ESTIMATORS, _load_builtin_estimators
    from lrbench.reports.paper_spec import REGISTERED_SPECS
    from lrbench.tasks import DATASETS, TASKS

    _load_builtin_estimators()
    return {"estimator": ESTIMATORS, "task": TASKS, "dataset": DATASETS, "paper": REGISTERED_SPECS}


def _snapshot() -> dict[str, dict[str, Any]]:
    return {kind: dict(registry) for kind, registry in _registries().items()}


def _added(before: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [(kind, name) for kind, registry in _registries().items() for name in registry
            if name not in before[kind]]


def _roll_back(before: dict[str, dict[str, Any]]) -> None:
    """Remove whatever was registered since ``before`` (a failed plugin leaves nothing half-registered)."""
    for kind, registry in _registries().items():
        for name in [n for n in registry if n not in before[kind]]:
            del registry[name]


def _user_error_types() -> tuple[type[BaseException], ...]:
    from lrbench.suite.errors import user_error_types

    return user_error_types()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _checked(added: list[tuple[str, str]]) -> None:
    """Deeper checks of what a plugin registered (a task's model must build)."""
    from lrbench.tasks import get_task, validate_task

    for kind, name in added:
        if kind == "task":
            validate_task(get_task(name))


# --------------------------------------------------------------------------- what an entry point names
def register_object(obj: Any, group: str, name: str) -> None:
    """Register the object an entry point of ``group`` names (module docstring for what it may be)."""
    import types

    from lrbench.estimators import Estimator, EstimatorError, register_estimator
    from lrbench.reports.paper_spec import register_paper
    from lrbench.tasks import DatasetInfo, TaskSpec, register_dataset, register_task

    if isinstance(obj, types.ModuleType):
        return  # importing it ran its registration calls
    if isinstance(obj, (list, tuple)):
        for item in obj:
            register_object(item, group, name)
        return
    if isinstance(obj, type) and issubclass(obj, Estimator):
        if obj.name != name and group == "lrbench.estimators":
            raise EstimatorError(f"entry point '{name}' names estimator class {obj.__qualname__} whose "
                                 f"name is {obj.name!r}; make the entry point's name equal the class's name")
        register_estimator(obj)
    elif isinstance(obj, TaskSpec):
        register_task(obj)
    elif isinstance(obj, DatasetInfo):
        register_dataset(obj)
    elif isinstance(obj, (str, Path)) and str(obj).endswith((".yaml", ".yml")):
        register_paper(obj)
    elif callable(obj):
        register_object(obj(), group, name)
    else:
        raise UserError(f"entry point '{name}' ({group}) names a {type(obj).__name__}; it must name an "
                        "Estimator subclass, a TaskSpec, a paper YAML path, a list of them, a function "
                        "returning them, or a module that registers them")


# --------------------------------------------------------------------------- loading
def _load(request: str, source: str, importer: Callable[[], Any], module: str) -> list[tuple[str, str]]:
    """Run ``importer`` (an import of ``module`` and/or registrations); on any failure roll back and raise
    PluginError."""
    before = _snapshot()
    try:
        importer()
        added = _added(before)
        _checked(added)
    except ModuleNotFoundError as exc:
        _roll_back(before)
        missing = str(exc.name)
        if module.split(".")[0] == missing.split(".")[0]:
            raise PluginError(f"plugin {request}: module '{missing}' not found; install it, or give a module "
                              "importable from the current folder (or a path to a .py file)") from None
        raise PluginError(f"plugin {request}: its import needs module '{missing}', which is not installed "
                          f"(pip install it, or fix the import)") from None
    except _user_error_types() as exc:
        _roll_back(before)
        raise PluginError(f"plugin {request}: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any error inside a plugin: one line, never a traceback
        _roll_back(before)
        raise PluginError(f"plugin {request} failed: {type(exc).__name__}: {_one_line(exc)}; fix the plugin "
                          f"(python -c 'import {module}' shows the traceback)") from None
    for key in added:
        ORIGINS.setdefault(key, source)
    return added


def _import_module(spec: str, search: Path | None) -> Any:
    """``spec`` is a module name (looked up on sys.path, then in ``search`` and the current folder) or a
    path to a ``.py`` file."""
    path = Path(spec)
    if spec.endswith(".py"):
        if search is not None and not path.is_absolute():
            path = search / path if (search / path).is_file() else path
        if not path.is_file():
            raise UserError("file not found; give the path of an existing .py file")
        name = path.stem
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    top = spec.split(".")[0]
    for folder in (search, Path.cwd()):  # a plugin next to the suite file / in the current folder
        if folder is not None and importlib.util.find_spec(top) is None and (
                (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()):
            sys.path.append(str(folder))
    return importlib.import_module(spec)


def load_plugins(modules: Iterable[str], source: str = "--plugin", search: str | Path | None = None
                 ) -> list[tuple[str, str]]:
    """Import each plugin module once (``source`` says who asked: ``--plugin``, ``suite FILE``); return the
    (kind, name) pairs they registered. A failure -> :class:`PluginError`, one line, nothing registered."""
    added: list[tuple[str, str]] = []
    folder = Path(search) if search is not None else None
    for spec in modules:
        if not isinstance(spec, str) or not spec.strip():
            raise PluginError(f"plugins must be module names or .py paths, got {spec!r}")
        spec = spec.strip()
        if spec in LOADED:
            continue
        where = f"--plugin {spec}" if source == "--plugin" else f"{source} (plugin {spec})"
        added += _load(spec, where, lambda spec=spec: _import_module(spec, folder),
                       Path(spec).stem if spec.endswith(".py") else spec)
        LOADED[spec] = source
    return added


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def load_entry_points(force: bool = False) -> list[str]:
    """Register every installed plugin's entry points (once per process unless ``force``). Returns one
    warning line per entry point that was skipped (import error, name clash, malformed object)."""
    global _entry_points_done
    if _entry_points_done and not force:
        return []
    _entry_points_done = True
    warnings: list[str] = []
    for group in GROUPS:
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            dist = _distribution(ep)
            key = f"{group}:{ep.name}"
            if key in LOADED:
                continue
            try:
                _load(f"entry point '{ep.name}' ({group}, {dist})", f"entry point {dist}",
                      lambda ep=ep, group=group: register_object(ep.load(), group, ep.name), ep.module)
            except PluginError as exc:
                dist_name = dist.split(" ")[0]
                warnings.append(f"{exc} [skipped; fix it or 'pip uninstall {dist_name}']")
            LOADED[key] = f"entry point {dist}"
    _entry_point_warnings.extend(warnings)
    return warnings


def origin(kind: str, name: str) -> str:
    """Where the registered ``kind`` (estimator, task, dataset, paper) ``name`` came from."""
    return ORIGINS.get((kind, name), BUILTIN)
