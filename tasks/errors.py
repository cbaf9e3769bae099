"""The one exception type of ``tasks``: unknown task, bad model option, missing or corrupt data."""

from __future__ import annotations


class TaskError(ValueError):
    """A user-facing task/data problem. The message is a single line that says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
