"""Decoded-tensor cache in the data root, so a second load skips decoding (``<root>/lrbench-cache``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

CACHE_VERSION = 1


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file, read in 1 MiB chunks ('' when it cannot be read)."""
    digest = hashlib.md5()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def cache_path(root: Path, name: str) -> Path:
    return root / "lrbench-cache" / f"{name}.pt"


def load_cache(root: Path, name: str, key: Any) -> dict[str, torch.Tensor] | None:
    """The cached tensors of ``name`` if present, readable and built from the same sources (``key``)."""
    path = cache_path(root, name)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or truncated cache: rebuild it
        return None
    if not isinstance(blob, dict) or blob.get("version") != CACHE_VERSION or blob.get("key") != key:
        return None
    return blob["tensors"]


def save_cache(root: Path, name: str, key: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Write the cache atomically; a read-only root just means no cache."""
    path = cache_path(root, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"version": CACHE_VERSION, "key": key, "tensors": tensors}, tmp)
        os.replace(tmp, path)
    except OSError:
        pass
