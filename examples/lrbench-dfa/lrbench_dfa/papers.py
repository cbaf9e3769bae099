"""The paper specs this plugin ships (``lrbench paper list`` shows them once the plugin is loaded)."""

from __future__ import annotations

from pathlib import Path

SPECS_DIR = Path(__file__).resolve().parent / "papers"


def spec_files() -> list[Path]:
    """Every YAML spec in ``papers/`` (the ``lrbench.papers`` entry point calls this)."""
    return sorted(SPECS_DIR.glob("*.yaml"))
