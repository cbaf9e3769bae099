"""Layered config merging: one layer of (possibly dotted) keys onto a config, dotted get/set.

``set_dotted(c, "estimator_options.copies", 32)`` sets one entry of a mapping key; a mapping value merges
into a mapping key key by key; an unknown top-level key is a one-line UserError naming the valid keys.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from lrbench.schema import ALL_KEYS, MAPPING_KEYS
from lrbench.suite.errors import UserError


def unknown_key_error(key: str, where: str = "") -> UserError:
    """The one-line error for a key that is not a config key (``out`` points to ``--out``)."""
    place = f" in {where}" if where else ""
    if str(key).split(".")[0] == "out":
        return UserError(f"'out' is not a config key{place}: give the results folder on the command line "
                         "with --out DIR")
    return UserError(f"unknown config key '{key}'{place}; valid keys: {', '.join(sorted(ALL_KEYS))}")


def check_key(key: str, where: str = "") -> None:
    """Raise :func:`unknown_key_error` unless the top level of ``key`` is a config key."""
    if str(key).split(".")[0] not in ALL_KEYS:
        raise unknown_key_error(key, where)

def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(c, "estimator_options.copies", 32)``; mapping values merge into mapping keys."""
    head, _, rest = key.partition(".")
    if rest:
        if head not in MAPPING_KEYS:
            raise UserError(f"'{key}': only {', '.join(MAPPING_KEYS)} take dotted sub-keys")
        sub = config.get(head)
        sub = dict(sub) if isinstance(sub, Mapping) else {}
        sub[rest] = copy.deepcopy(value)
        config[head] = sub
    elif head in MAPPING_KEYS and isinstance(value, Mapping) and isinstance(config.get(head), Mapping):
        config[head] = {**config[head], **value}
    else:
        config[head] = copy.deepcopy(value)


def get_dotted(config: Mapping[str, Any], key: str) -> Any:
    """``config['a']['b']`` for ``key='a.b'``, or :data:`MISSING`."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


MISSING = object()


def merge(base: dict[str, Any], layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Apply one layer of (possibly dotted) keys onto ``base``; unknown top-level keys are errors."""
    out = dict(base)
    for key, value in layer.items():
        check_key(str(key), where)
        set_dotted(out, str(key), value)
    return out


def mapping_value(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a dict (None -> {}); anything else is a one-line UserError naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserError(f"{where} must be a mapping of key: value, got {type(value).__name__}")
    return dict(value)
