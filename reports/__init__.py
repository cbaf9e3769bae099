"""lrbench.reports."""
