"""Command-line tokens: ``key=value`` assignments (values parsed as YAML), leftovers argparse could not
place, and YAML files read with the error's location in one line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from lrbench.suite.errors import UserError


def parse_assignments(pairs: Iterable[str], what: str) -> dict[str, Any]:
    """``["max_epochs=1", "seeds=[0,1]"]`` -> ``{"max_epochs": 1, "seeds": [0, 1]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{what} '{pair}' must look like KEY=VALUE")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise UserError(f"{what} '{pair}': the value is not valid YAML") from None
    return out



def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file; a syntax error becomes one UserError line: ``{what} at line L, column C: problem``."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{what}{where}: {getattr(exc, 'problem', None) or exc}") from None


def check_extra_tokens(extra: list[str], command: str) -> list[str]:
    """Tokens argparse left over must be ``key=value`` overrides; anything else is one UserError line."""
    bad = [t for t in extra if t.startswith("-") or "=" not in t]
    if bad:
        raise UserError(f"unrecognized argument '{bad[0]}' (overrides look like key=value; "
                        f"see 'lrbench {command} --help')")
    return list(extra)
