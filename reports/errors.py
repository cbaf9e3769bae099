"""The one error type of the reports package: bad or missing input, told in one line."""

from __future__ import annotations


class ReportError(ValueError):
    """A results folder that cannot be reported on (missing, empty, malformed) or a bad paper spec.

    The CLI prints its message as one line (``lrbench: error: ...``) and exits with code 2.
    """
