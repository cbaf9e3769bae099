"""Helpers for tests and smoke runs: copy real dataset files into a writable root, and write small
CIFAR-format fixtures.

CIFAR cannot be fetched offline, so its loading code is exercised on files in the real pickle format.
torchvision's CIFAR classes verify every file against the md5s listed in ``train_list``, ``test_list``
and ``meta``; :func:`write_cifar_fixture` returns a *subclass* whose lists hold the fixture files' own
md5s (the production classes and checks are untouched), to be installed in
``tasks.datasets.images.TORCHVISION_CLASSES`` for the duration of a test.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
from torchvision import datasets as tvd

DATASET_FOLDERS = {"mnist": "MNIST", "fmnist": "FashionMNIST", "shakespeare": "text"}


def copy_dataset(shared: Path, root: Path, name: str) -> Path:
    """Copy the files of ``name`` (mnist, fmnist, shakespeare) from a torchvision-layout folder
    ``shared`` into ``root`` (skipped when already there); returns ``root``."""
    folder = DATASET_FOLDERS[name]
    src, dst = Path(shared) / folder, Path(root) / folder
    if not dst.exists():
        shutil.copytree(src, dst)
        for path in [dst, *dst.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    return Path(root)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar_fixture(root: Path, name: str = "cifar10", per_batch: int = 20, test: int = 20,
                        seed: int = 0) -> tuple[type, dict[str, np.ndarray]]:
    """Write a small CIFAR-10 (5 train batches + test batch + batches.meta) or CIFAR-100 (train, test,
    meta) in the real pickle format under ``root/<base_folder>``.

    Returns ``(fixture_class, arrays)`` where ``fixture_class`` subclasses the torchvision class with the
    fixture files' md5s and ``arrays`` holds the written ``train_x`` (N, 3, 32, 32) uint8, ``train_y``,
    ``test_x``, ``test_y`` for comparison.
    """
    rng = np.random.default_rng(seed)
    base = tvd.CIFAR100 if name == "cifar100" else tvd.CIFAR10
    classes = 100 if name == "cifar100" else 10
    label_key = "fine_labels" if name == "cifar100" else "labels"
    folder = Path(root) / base.base_folder
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> tuple[np.ndarray, list[int]]:
        return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, classes, size=n).tolist()

    train_names = [f for f, _ in base.train_list]
    written: dict[str, tuple[np.ndarray, list[int]]] = {}
    for fname in train_names:
        written[fname] = batch(per_batch * 5 // len(train_names))
    test_name = base.test_list[0][0]
    written[test_name] = batch(test)
    for fname, (data, labels) in written.items():
        entry = {"data": data, label_key: labels, "filenames": [f"{i}.png" for i in range(len(labels))]}
        if name == "cifar100":
            entry["coarse_labels"] = [lab // 5 for lab in labels]
        _dump(folder / fname, entry)
    _dump(folder / base.meta["filename"], {base.meta["key"]: [f"class{i}" for i in range(classes)]})

    attrs = {
        "train_list": [[f, _md5(folder / f)] for f in train_names],
        "test_list": [[test_name, _md5(folder / test_name)]],
        "meta": {**base.meta, "md5": _md5(folder / base.meta["filename"])},
    }
    fixture_cls = type(f"Fixture{base.__name__}", (base,), attrs)
    arrays = {
        "train_x": np.concatenate([written[f][0] for f in train_names]).reshape(-1, 3, 32, 32),
        "train_y": np.concatenate([written[f][1] for f in train_names]).astype(np.int64),
        "test_x": written[test_name][0].reshape(-1, 3, 32, 32),
        "test_y": np.asarray(written[test_name][1], dtype=np.int64),
    }
    return fixture_cls, arrays
