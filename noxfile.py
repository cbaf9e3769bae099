"""nox sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s slow``, ``nox -s quick``, ``nox -s sweep``, ``nox -s report``, ``nox -s paper``.

Sessions reuse one virtualenv per session (``nox -r`` skips re-installs)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """Fast test suite (the slow Monte-Carlo/training cases are behind the 'slow' marker)."""
    _install(session)
    # test-only oracle for the attacks; it pins requests~=2.25.1, hence --no-deps (never a runtime dependency)
    session.install("--no-deps", "torchattacks")
    session.run("pytest", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Slow Monte-Carlo and training tests."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole project."""
    session.install("ruff")
    session.run("ruff", "check", "lrbench", "estimators", "tasks", "suite", "reports", "tests", "scripts", "noxfile.py")


@nox.session
def quick(session: nox.Session) -> None:
    """The main job: the built-in quick suite on the embedded digits data."""
    _install(session)
    session.run("lrbench", "run", "quick", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """HTML/Markdown report of a results folder: ``nox -s report -- DIR [--out OUT]`` (default DIR: results)."""
    _install(session)
    session.run("lrbench", "report", *(session.posargs or ["results"]))


@nox.session
def paper(session: nox.Session) -> None:
    """Regenerate a paper figure/table: ``nox -s paper -- NAME [--budget quick|full] [--out DIR]``
    (default: xconv-table1 on the quick budget; ``nox -s paper -- list`` lists the specs)."""
    _install(session)
    session.run("lrbench", "paper", *(session.posargs or ["xconv-table1", "--budget", "quick"]))


@nox.session
def sweep(session: nox.Session) -> None:
    """A study's sweep, offline: ``nox -s sweep -- FILE [key=value ...]`` (default: the xconv probes x batch
    grid on digits-cnn, into results/xconv-probes-batch). The sweep tests run first."""
    _install(session)
    session.run("pytest", "tests/suite/test_sweep.py")
    session.run("lrbench", "sweep", *(session.posargs or ["xconv_probes_batch"]), "--offline")
