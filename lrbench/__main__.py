"""``python -m lrbench`` is the same as the ``lrbench`` command."""

from lrbench.suite.cli.main import entry

entry()
