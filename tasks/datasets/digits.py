"""scikit-learn's bundled 8×8 digits: the offline default dataset (no files needed).

1,797 images scaled to [0, 1] by /16, shape (1, 8, 8); a stratified split seeded by ``seed`` (the task's split seed, 0 by default):
20% test, 10% validation, the rest (1,257 images) for training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import TaskData
from ..errors import TaskError

TEST_FRACTION = 0.2
VAL_FRACTION = 0.1


def load(root: Path, seed: int = 0, **options: Any) -> TaskData:
    """Load the digits (``root`` is unused: the data ships with scikit-learn)."""
    if options:
        raise TaskError(f"dataset 'digits' takes no option '{sorted(options)[0]}'")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=VAL_FRACTION / (1 - TEST_FRACTION), random_state=seed, stratify=y_rest)

    def pair(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))

    return TaskData("digits", pair(x_train, y_train), pair(x_val, y_val), pair(x_test, y_test),
                    num_classes=10, input_shape=(1, 8, 8))
