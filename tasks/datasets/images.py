"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through ``torchvision.datasets`` (with its md5 checks).

Files are looked for in the torchvision layout under the data root; nothing is downloaded unless
``download=True`` (which needs internet). Before torchvision runs, every expected file is checked
(present? md5 as listed by the torchvision class?) so that a missing or corrupt file gives one line
naming it. Decoded images are cached as uint8 tensors in ``<root>/lrbench-cache/<name>.pt``.

The torchvision class used for each dataset is ``torchvision.datasets.<CLASS_NAMES[name]>`` unless
:data:`TORCHVISION_CLASSES` holds an override: tests put a subclass there whose per-file md5 lists
describe their own small fixture files. torchvision is imported on first use (it is slow to import).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Split, TaskData, split_generator
from ..errors import TaskError
from .cache import file_md5, load_cache, save_cache

CLASS_NAMES = {"mnist": "MNIST", "fmnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
TORCHVISION_CLASSES: dict[str, type] = {}   # overrides (test fixtures); empty in production


def torchvision_class(name: str) -> type:
    """The ``torchvision.datasets`` class that reads dataset ``name`` (or its override)."""
    if name in TORCHVISION_CLASSES:
        return TORCHVISION_CLASSES[name]
    from torchvision import datasets as tvd

    return getattr(tvd, CLASS_NAMES[name])


def check_integrity(path: str, md5: str) -> bool:
    return file_md5(path) == md5
VAL_SIZE = 5000
_DOWNLOAD_HINT = "or pass download=True (needs internet)"


def _is_cifar(cls: type) -> bool:
    return hasattr(cls, "train_list") and hasattr(cls, "base_folder")


def _expected_files(cls: type, root: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """(folder, [(file, md5)]) that torchvision reads for ``cls``."""
    if _is_cifar(cls):
        folder = root / cls.base_folder
        listed = [(folder / f, md5) for f, md5 in [*cls.train_list, *cls.test_list]]
        return folder, [*listed, (folder / cls.meta["filename"], cls.meta["md5"])]
    folder = root / cls.__name__ / "raw"
    return folder, [(folder / f, md5) for f, md5 in cls.resources]


def _check_files(name: str, cls: type, root: Path, download: bool) -> bool:
    """Raise TaskError for a corrupt file or (unless ``download``) missing files.

    Returns True when torchvision must be called with ``download=True`` (to extract a verified archive
    or, when allowed, to fetch missing files)."""
    if root.exists() and not root.is_dir():
        raise TaskError(f"data root {root} is not a folder; pass --data-dir or set LRBENCH_DATA to a folder")
    folder, files = _expected_files(cls, root)
    missing: list[Path] = []
    needs_extract = False
    for path, md5 in files:
        if path.is_file():
            if not check_integrity(str(path), md5):
                raise TaskError(f"{name}: file {path} is corrupt (md5 mismatch, expected {md5}); "
                                "replace it with the original file")
            needs_extract = needs_extract or (path.suffix == ".gz" and not path.with_suffix("").is_file())
        elif path.suffix == ".gz" and path.with_suffix("").is_file():
            continue  # already extracted by torchvision: it reads the extracted file
        else:
            missing.append(path)
    if missing and _is_cifar(cls):
        archive = root / cls.filename
        if archive.is_file():
            if not check_integrity(str(archive), cls.tgz_md5):
                raise TaskError(f"{name}: file {archive} is corrupt (md5 mismatch, expected {cls.tgz_md5}); "
                                "replace it with the original archive")
            return True
    if missing and not download:
        names = ", ".join(p.name for p in missing)
        raise TaskError(f"{name} not found: put {names} in {folder}/ (torchvision layout; "
                        f"data root from --data-dir, LRBENCH_DATA or ~/.cache/lrbench/data), {_DOWNLOAD_HINT}")
    return needs_extract or bool(missing)


def _read(name: str, cls: type, root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 (N, C, H, W) and labels as int64 through the torchvision class."""
    try:
        ds = cls(str(root), train=train, download=download)
    except PermissionError as err:
        raise TaskError(f"{name}: cannot write beside the archives in {root} ({err.strerror}); "
                        "copy them into a writable data root") from None
    except TaskError:
        raise
    except Exception as err:  # torchvision raises RuntimeError / URLError / pickle errors
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(":. ")
        if download:
            folder, files = _expected_files(cls, root)
            raise TaskError(f"{name}: download failed ({first}); downloading needs internet, or put "
                            f"{', '.join(p.name for p, _ in files)} in {folder}/ by hand") from None
        raise TaskError(f"{name}: could not load from {root}: {first}") from None
    data = ds.data
    if isinstance(data, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(data))
    else:
        images = data.clone()
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return images.contiguous(), labels


def _decoded(name: str, root: Path, download: bool) -> dict[str, torch.Tensor]:
    cls = torchvision_class(name)
    _, files = _expected_files(cls, root)
    key = [cls.__name__, *[md5 for _, md5 in files]]
    cached = load_cache(root, name, key)
    if cached is not None:
        return cached
    fetch = _check_files(name, cls, root, download)
    train_x, train_y = _read(name, cls, root, True, fetch)
    test_x, test_y = _read(name, cls, root, False, False)
    tensors = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    save_cache(root, name, key, tensors)
    return tensors


def load_images(name: str, root: Path, seed: int = 0, download: bool = False,
                val_size: int = VAL_SIZE) -> TaskData:
    """Load ``name`` from ``root``; validation = ``val_size`` training images drawn with ``seed``."""
    t = _decoded(name, root, download)
    n_train = t["train_x"].shape[0]
    n_val = min(int(val_size), n_train // 10) if n_train < 10 * val_size else int(val_size)
    perm = torch.randperm(n_train, generator=split_generator(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values

    def pair(x: torch.Tensor, y: torch.Tensor) -> Split:
        return x.to(torch.float32).div_(255.0), y

    train = pair(t["train_x"][train_idx], t["train_y"][train_idx])
    val = pair(t["train_x"][val_idx], t["train_y"][val_idx])
    test = pair(t["test_x"], t["test_y"])
    num_classes = 100 if name == "cifar100" else 10
    return TaskData(name, train, val, test, num_classes=num_classes, input_shape=tuple(train[0].shape[1:]))


def loader(name: str) -> Callable[..., TaskData]:
    """The loader function for dataset ``name`` (signature ``(root, seed=0, **options)``)."""
    def load(root: Path, seed: int = 0, **options: Any) -> TaskData:
        allowed = {"download", "val_size"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise TaskError(f"dataset '{name}' takes no option '{unknown[0]}'; valid options: "
                            f"{', '.join(sorted(allowed))}")
        return load_images(name, root, seed=seed, **options)

    load.__doc__ = f"Load {name} (see :func:`load_images`)."
    return load
