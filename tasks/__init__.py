"""lrbench.tasks."""
