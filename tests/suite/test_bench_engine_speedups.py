"""The LR engine's speed-ups measured by ``lrbench bench`` change no number: head sharing (a noisy block's
first row-wise module runs once per sample, its output replicated) and the word-parallel sign packing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench.estimators import get_estimator
from lrbench.estimators.lr_hooks import PerturbationHooks
from lrbench.estimators.noise import pack_signs, signs_of, unpack_signs

B, K = 3, 4


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten()),
                         nn.Sequential(nn.Linear(48, 8), nn.Tanh()), nn.Linear(8, 5)).double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(B, 2, 4, 4, generator=gen, dtype=torch.float64), torch.randint(0, 5, (B,), generator=gen)


def _loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def _grads(opts: dict, share: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[torch.Tensor], list[int]]:
    """Gradient of one estimate, and the rows each head module (first module of a block) was called on."""
    model, (x, y) = _model(), _batch()
    heads = [model[0][0], model[1][0], model[2]]
    rows: list[int] = []
    for m in heads:
        m.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
    if not share:
        monkeypatch.setattr(PerturbationHooks, "shares_head", lambda self, slot: False)
    get_estimator("ulr", copies=K, sigma=0.05, seed=3, **opts).estimate(model, _loss, x, y)
    monkeypatch.undo()
    return [p.grad.clone() for p in model.parameters()], rows


# (options, head calls that run on B rows instead of B·k, copies k of those passes). Prefix sharing: every
# block's pass starts at its head (3 blocks; with chunk=6 each block takes 2 passes of k=2). Replay and
# global: only the network's first module sees the replicated input while it is noisy (one pass).
CASES = [({"injection": "layerwise", "prefix_sharing": True}, 3, K),
         ({"injection": "layerwise", "prefix_sharing": True, "chunk": 6}, 6, 2),
         ({"injection": "layerwise"}, 1, K), ({"injection": "global"}, 1, K)]


@pytest.mark.parametrize(("opts", "shared_calls", "k"), CASES, ids=["prefix", "prefix-chunk", "replay", "global"])
def test_head_sharing_gives_the_same_gradient_and_runs_heads_per_sample(
        opts: dict, shared_calls: int, k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    shared, rows_shared = _grads(opts, True, monkeypatch)
    full, rows_full = _grads(opts, False, monkeypatch)
    for a, b in zip(shared, full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert len(rows_shared) == len(rows_full)
    assert sum(rows_full) - sum(rows_shared) == shared_calls * B * (k - 1)


def test_sign_packing_matches_its_definition_for_every_byte() -> None:
    table = torch.arange(256, dtype=torch.uint8)
    expected = torch.tensor([[1.0 if (b >> j) & 1 else -1.0 for j in range(8)] for b in range(256)]).reshape(-1)
    assert torch.equal(unpack_signs(table, (2048,), torch.float32), expected)
    for shape in [(7, 3, 5), (1,), (8,), (33, 17)]:
        eps = torch.randn(shape)
        bits = (eps.reshape(-1) > 0).to(torch.uint8)
        bits = torch.cat([bits, bits.new_zeros((-bits.numel()) % 8)]).view(-1, 8)
        reference = (bits * (2 ** torch.arange(8)).to(torch.uint8)).sum(1, dtype=torch.uint8)
        assert torch.equal(pack_signs(eps), reference)
        assert torch.equal(unpack_signs(pack_signs(eps), shape, torch.float64), signs_of(eps).double())
