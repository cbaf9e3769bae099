"""``python -m lrbench.suite`` is the same as ``lrbench``."""

from lrbench.suite.cli.main import entry

entry()
