"""Helpers shared by the tests (never shipped in the wheel)."""
