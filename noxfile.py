"""nox sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s slow``, ``nox -s quick``.

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
    session.run("ruff", "check", "estimators", "tasks", "suite", "reports", "tests", "noxfile.py")


@nox.session
def quick(session: nox.Session) -> None:
    """The main job: the built-in quick suite on the embedded digits data."""
    _install(session)
    session.run("lrbench", "run", "quick", *session.posargs)
