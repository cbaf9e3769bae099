"""RNN family: Elman, GRU and LSTM cells built from ``nn.Linear`` and unrolled in Python.

Each cell's Linear modules are called once per time step (fresh noise per call for the LR estimators,
whose gradient for a shared weight is the sum of the per-call estimates). Two task shapes:

* row-by-row image classification: an H×W image is a length-H sequence of W-pixel rows; the last
  hidden state feeds a Linear classifier (digits: 8 steps, MNIST: 28 steps);
* a character-level language model: Embedding → RNN layers → Linear head at every position,
  outputs (N, T, vocab).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import TaskError
from .layers import Normalize, make_activation

State = tuple[torch.Tensor, ...]


class ElmanCell(nn.Module):
    """h' = act(W [x; h] + b)."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh") -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size + hidden_size, hidden_size)
        self.act = make_activation(activation)

    def initial_state(self, x: torch.Tensor) -> State:
        return (x.new_zeros(x.shape[0], self.hidden_size),)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = self.act(self.linear(torch.cat([x, state[0]], dim=1)))
        return h, (h,)


class GRUCell(nn.Module):
    """z, r = σ(W_g [x; h] + b_g); n = act(W_n [x; r⊙h] + b_n); h' = (1 − z)⊙n + z⊙h."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh") -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.gates = nn.Linear(input_size + hidden_size, 2 * hidden_size)
        self.candidate = nn.Linear(input_size + hidden_size, hidden_size)
        self.act = make_activation(activation)

    def initial_state(self, x: torch.Tensor) -> State:
        return (x.new_zeros(x.shape[0], self.hidden_size),)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = state[0]
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = self.act(self.candidate(torch.cat([x, r * h], dim=1)))
        h = (1 - z) * n + z * h
        return h, (h,)


class LSTMCell(nn.Module):
    """i, f, g, o = split(W [x; h] + b); c' = σ(f)⊙c + σ(i)⊙act(g); h' = σ(o)⊙act(c'). Forget bias starts at 1."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh") -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        with torch.no_grad():
            self.linear.bias[hidden_size:2 * hidden_size].fill_(1.0)
        self.act = make_activation(activation)

    def initial_state(self, x: torch.Tensor) -> State:
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return (zeros, zeros)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state
        i, f, g, o = self.linear(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(g)
        h = torch.sigmoid(o) * self.act(c)
        return h, (h, c)


CELLS: dict[str, type[nn.Module]] = {"elman": ElmanCell, "gru": GRUCell, "lstm": LSTMCell}


def make_cell(kind: str, input_size: int, hidden_size: int, activation: str = "tanh") -> nn.Module:
    if kind not in CELLS:
        raise TaskError(f"unknown cell '{kind}'; valid cells: {', '.join(CELLS)}")
    return CELLS[kind](input_size, hidden_size, activation)


class Recurrent(nn.Module):
    """Unroll ``cell`` over a (N, T, F) sequence; return all hidden states (N, T, H) or the last (N, H)."""

    def __init__(self, cell: nn.Module, return_sequence: bool = True) -> None:
        super().__init__()
        self.cell = cell
        self.return_sequence = return_sequence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.cell.initial_state(x[:, 0])
        outputs = []
        for t in range(x.shape[1]):
            h, state = self.cell(x[:, t], state)
            outputs.append(h)
        return torch.stack(outputs, dim=1) if self.return_sequence else outputs[-1]

    def extra_repr(self) -> str:
        return f"return_sequence={self.return_sequence}"


class ImageRows(nn.Module):
    """(N, C, H, W) -> (N, H, C·W): an image read top to bottom, one row per time step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(n, h, c * w)


def build_row_rnn(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                  cell: str = "gru", hidden: int = 64, layers: int = 1, activation: str = "tanh") -> nn.Sequential:
    """Row-by-row sequence classifier. Blocks: [Normalize, ImageRows], one ``Recurrent`` per layer (the
    last returns only its final state), Linear(hidden → classes)."""
    c, _, w = (int(s) for s in input_shape)
    blocks: list[nn.Module] = [nn.Sequential(Normalize(mean, std), ImageRows())]
    size = c * w
    for i in range(int(layers)):
        blocks.append(Recurrent(make_cell(cell, size, int(hidden), activation), return_sequence=i < layers - 1))
        size = int(hidden)
    blocks.append(nn.Linear(size, num_classes))
    return nn.Sequential(*blocks)


def build_char_rnn(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                   cell: str = "lstm", embedding: int = 32, hidden: int = 128, layers: int = 1,
                   activation: str = "tanh") -> nn.Sequential:
    """Character LM. Blocks: Embedding(vocab → embedding), ``layers`` × Recurrent (all states),
    Linear(hidden → vocab) applied at every position: (N, T) int64 -> (N, T, vocab)."""
    blocks: list[nn.Module] = [nn.Embedding(num_classes, int(embedding))]
    size = int(embedding)
    for _ in range(int(layers)):
        blocks.append(Recurrent(make_cell(cell, size, int(hidden), activation), return_sequence=True))
        size = int(hidden)
    blocks.append(nn.Linear(size, num_classes))
    return nn.Sequential(*blocks)
