"""Dataset registry: name -> :class:`DatasetInfo` (shape, classes, normalisation stats, loader).

    from lrbench.tasks.datasets import get_dataset, load_dataset
    data = load_dataset("digits", data_dir=None, device="cpu", seed=0)   # TaskData

Every loader returns inputs scaled to [0, 1]; the per-channel ``mean``/``std`` are used by the models'
parameter-free first op, never applied to the stored data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..augment import crop_flip
from ..data import Augment, TaskData, data_root
from ..errors import TaskError
from . import digits, images, shakespeare

Loader = Callable[..., TaskData]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset (no loading needed): used to build models and describe tasks."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    loader: Loader
    augment: Augment | None = None
    description: str = ""


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", (1, 8, 8), 10, (0.3053,), (0.3760,), digits.load,
                    description="scikit-learn 8x8 digits (1,797 images, bundled; fixed seeded split)"),
        DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,), images.loader("mnist"),
                    description="MNIST 28x28 handwritten digits (torchvision layout <root>/MNIST/raw)"),
        DatasetInfo("fmnist", (1, 28, 28), 10, (0.2860,), (0.3530,), images.loader("fmnist"),
                    description="Fashion-MNIST 28x28 (torchvision layout <root>/FashionMNIST/raw)"),
        DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                    images.loader("cifar10"), augment=crop_flip,
                    description="CIFAR-10 32x32 colour (<root>/cifar-10-batches-py); crop+flip augmentation"),
        DatasetInfo("cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                    images.loader("cifar100"), augment=crop_flip,
                    description="CIFAR-100 32x32 colour (<root>/cifar-100-python); crop+flip augmentation"),
        DatasetInfo("shakespeare", (shakespeare.DEFAULT_SEQ_LEN,), shakespeare.VOCAB_SIZE, (), (),
                    shakespeare.load,
                    description="tiny-shakespeare character-level next-char prediction "
                                "(<root>/text/tinyshakespeare/input.txt)"),
    )
}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset (how a plugin brings its own data); a name already taken -> TaskError (one line)."""
    if not isinstance(info, DatasetInfo):
        raise TaskError(f"register_dataset() takes a DatasetInfo, got {type(info).__name__}")
    if info.name in DATASETS:
        raise TaskError(f"dataset name '{info.name}' is already taken; give the new dataset another name")
    DATASETS[info.name] = info
    return info


def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` called ``name``; unknown -> TaskError listing the valid names."""
    if name not in DATASETS:
        raise TaskError(f"unknown dataset '{name}'; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, device: Any = "cpu",
                 seed: int = 0, **options: Any) -> TaskData:
    """Load dataset ``name`` from the data root (see :func:`tasks.data.data_root`) onto ``device``."""
    info = get_dataset(name)
    root: Path = data_root(data_dir)
    data = info.loader(root, seed=seed, **options)
    data.augment = info.augment
    return data.to(device)
