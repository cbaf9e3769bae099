"""``python -m lrbench.suite`` is the same as ``lrbench``."""

from .cli import entry

entry()
