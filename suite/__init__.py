"""lrbench.suite."""
