"""The one import namespace: every package folder is installed under ``lrbench.*``, no project file imports
a bare top-level name (``tasks``, ``suite``, ...), and an installed lrbench claims none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("estimators", "tasks", "suite", "reports")


def _project_files() -> list[Path]:
    files = [p for root in (*ROOTS, "lrbench", "tests") for p in (REPO / root).rglob("*.py")]
    return [*files, REPO / "noxfile.py"]


def test_no_bare_top_level_imports() -> None:
    """The lint rule: ``import tasks`` / ``from suite.x import y`` would only work with the checkout on
    sys.path; everything imports ``lrbench.<package>`` (relative imports inside a package are fine)."""
    offenders = []
    for path in _project_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ROOTS]
    assert offenders == []


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"lrbench"} | {
        "lrbench." + ".".join(init.parent.relative_to(REPO).parts)
        for root in ROOTS for init in (REPO / root).rglob("__init__.py")} | {
        ".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "lrbench").rglob("*/__init__.py")}
    assert found == listed
    assert {config["package-dir"][f"lrbench.{root}"] for root in ROOTS} == set(ROOTS)


def test_installed_namespace_from_an_unrelated_folder(tmp_path: Path) -> None:
    code = ("import lrbench, lrbench.estimators, lrbench.tasks, lrbench.suite, lrbench.reports\n"
            "import importlib.util as u\n"
            "print(lrbench.__version__, [n for n in ('tasks', 'suite', 'reports', 'estimators') if u.find_spec(n)])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    version, claimed = done.stdout.split(" ", 1)
    assert version[0].isdigit() and claimed.strip() == "[]"
