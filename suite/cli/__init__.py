"""The command-line layer: the ``lrbench`` command, its sub-commands, suite/sweep files, the run plan."""
