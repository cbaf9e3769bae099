"""tiny-shakespeare, character level: predict the next character at every position.

The corpus (default ``<root>/text/tinyshakespeare/input.txt``, md5-checked; or any text file given by
``path=``) is split contiguously 90/5/5 into train/val/test, each cut into non-overlapping windows of
``seq_len + 1`` characters: inputs ``x = w[:-1]`` and targets ``y = w[1:]``, both int64 (N, seq_len).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data import Split, TaskData
from ..errors import TaskError
from .cache import file_md5

VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VOCAB_SIZE = len(VOCAB)
DEFAULT_SEQ_LEN = 64
RELATIVE_PATH = Path("text") / "tinyshakespeare" / "input.txt"
MD5 = "6fb458f1232090904fb40fe944165e91"
FRACTIONS = (0.9, 0.05, 0.05)


def encode(text: str) -> torch.Tensor:
    """Characters -> int64 indices into :data:`VOCAB`; a character outside it is a TaskError."""
    table = {c: i for i, c in enumerate(VOCAB)}
    try:
        return torch.tensor([table[c] for c in text], dtype=torch.int64)
    except KeyError as err:
        raise TaskError(f"shakespeare: character {err.args[0]!r} is not in the tiny-shakespeare vocabulary") from None


def decode(indices: torch.Tensor) -> str:
    return "".join(VOCAB[int(i)] for i in indices.reshape(-1))


def _windows(ids: torch.Tensor, seq_len: int) -> Split:
    n = (ids.numel() - 1) // seq_len
    if n < 1:
        raise TaskError(f"shakespeare: text too short for seq_len={seq_len}")
    x = ids[: n * seq_len].view(n, seq_len)
    y = ids[1: n * seq_len + 1].view(n, seq_len)
    return x.clone(), y.clone()


def load(root: Path, seed: int = 0, path: str | None = None, seq_len: int = DEFAULT_SEQ_LEN,
         **options: Any) -> TaskData:
    """Load the character corpus (``seed`` is unused: the split is contiguous)."""
    if options:
        raise TaskError(f"dataset 'shakespeare' takes no option '{sorted(options)[0]}'; valid options: path, seq_len")
    file = Path(path).expanduser() if path else root / RELATIVE_PATH
    if not file.is_file():
        raise TaskError(f"shakespeare not found: put input.txt (tiny-shakespeare, karpathy/char-rnn) at {file} "
                        "(data root from --data-dir, LRBENCH_DATA or ~/.cache/lrbench/data); "
                        "downloading it needs internet")
    if path is None and file_md5(file) != MD5:
        raise TaskError(f"shakespeare: file {file} is corrupt (md5 mismatch, expected {MD5}); "
                        "replace it with the original file")
    ids = encode(file.read_text(encoding="utf-8"))
    n = ids.numel()
    a, b = int(n * FRACTIONS[0]), int(n * (FRACTIONS[0] + FRACTIONS[1]))
    seq_len = int(seq_len)
    return TaskData("shakespeare", _windows(ids[:a], seq_len), _windows(ids[a:b], seq_len),
                    _windows(ids[b:], seq_len), num_classes=VOCAB_SIZE, input_shape=(seq_len,),
                    extras={"vocab": VOCAB})
