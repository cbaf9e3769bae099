"""Tensor-resident datasets: the :class:`TaskData` container, the data root, and fast batching.

Small datasets live as whole tensors on the training device; a batch is one index into them
(no per-sample PIL transforms). Shuffling uses a seeded ``torch.Generator`` so a (seed, epoch) pair
always yields the same order; augmentations are tensor functions ``augment(x, generator) -> x``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import TaskError

Split = tuple[torch.Tensor, torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

DEFAULT_DATA_ROOT = Path("~/.cache/lrbench/data")
SPLITS = ("train", "val", "test")


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``data_dir`` argument > ``$LRBENCH_DATA`` > ``~/.cache/lrbench/data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("LRBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_ROOT.expanduser()


def split_generator(seed: int, *salt: int) -> torch.Generator:
    """A CPU generator keyed on ``seed`` and optional salts (e.g. the epoch)."""
    key = int(seed) & 0xFFFFFFFF
    for s in salt:
        key = (key * 1_000_003 + int(s) + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(key)


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                    generator: torch.Generator | None = None, augment: Augment | None = None,
                    drop_last: bool = False) -> Iterator[Split]:
    """Yield ``(x[idx], y[idx])`` mini-batches of whole tensors.

    ``shuffle`` draws one permutation from ``generator`` (CPU) per call; ``augment`` (if given) is applied
    to each input batch with the same generator, so the whole epoch is a function of the generator state.
    """
    if batch_size < 1:
        raise TaskError(f"batch_size must be >= 1, got {batch_size}")
    n = x.shape[0]
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=gen) if shuffle else None
    if order is not None:
        order = order.to(x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            xb, yb = x[start:end], y[start:end]
        else:
            idx = order[start:end]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        if augment is not None:
            xb = augment(xb, gen)
        yield xb, yb


@dataclass
class TaskData:
    """Train/val/test tensors of one dataset, already on the target device.

    ``train``, ``val``, ``test`` are ``(inputs, targets)`` pairs; image inputs are float in [0, 1] with
    shape ``(N, *input_shape)``; targets are int64 class indices (or next-token indices for a language
    model, shape ``(N, T)``). ``augment`` is the training-time augmentation (or None).
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    augment: Augment | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise TaskError(f"unknown split '{name}'; valid splits: {', '.join(SPLITS)}")
        return getattr(self, name)

    def batches(self, split: str, batch_size: int, *, shuffle: bool | None = None, seed: int = 0,
                epoch: int = 0, augment: bool | None = None, drop_last: bool = False) -> Iterator[Split]:
        """Mini-batches of one split. Training defaults: shuffled (seeded by ``(seed, epoch)``) and augmented."""
        x, y = self.split(split)
        is_train = split == "train"
        shuffle = is_train if shuffle is None else shuffle
        use_aug = is_train if augment is None else augment
        gen = split_generator(seed, epoch)
        return iterate_batches(x, y, batch_size, shuffle=shuffle, generator=gen,
                               augment=self.augment if use_aug else None, drop_last=drop_last)

    def num_batches(self, split: str, batch_size: int, drop_last: bool = False) -> int:
        n = self.split(split)[0].shape[0]
        return n // batch_size if drop_last else -(-n // batch_size)

    def to(self, device: str | torch.device) -> TaskData:
        """A copy with every tensor moved to ``device``."""
        moved = {s: tuple(t.to(device) for t in self.split(s)) for s in SPLITS}
        return TaskData(self.name, moved["train"], moved["val"], moved["test"], self.num_classes,
                        self.input_shape, self.augment, dict(self.extras))

    def subset(self, train: int | None = None, val: int | None = None, test: int | None = None) -> TaskData:
        """A copy keeping the first ``n`` samples of each split (for smoke tests and quick runs)."""
        def cut(s: Split, n: int | None) -> Split:
            return s if n is None else (s[0][:n], s[1][:n])
        return TaskData(self.name, cut(self.train, train), cut(self.val, val), cut(self.test, test),
                        self.num_classes, self.input_shape, self.augment, dict(self.extras))
