"""User-facing errors: the CLI prints their one-line message and exits with code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, malformed file, missing data)."""

    exit_code = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type whose message is meant for the user (one line naming the fix)."""
    from lrbench.estimators import EstimatorError
    from lrbench.reports.errors import ReportError  # bad/missing results folder or paper spec

    types: list[type[BaseException]] = [UserError, EstimatorError, ReportError]
    try:
        from lrbench.tasks import (
            TaskError,  # the tasks package defines its own (data missing, corrupt, unknown task)
        )

        types.append(TaskError)
    except ImportError:  # pragma: no cover - tasks always ships TaskError
        pass
    return tuple(types)
