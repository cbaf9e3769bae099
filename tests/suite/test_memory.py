"""Peak training-step memory (suite.training.metrics.memory) against allocation patterns of known size."""

from __future__ import annotations

import pytest
import torch

from lrbench.suite.training.metrics.memory import DEFINITION, LiveTensorTracker, PeakMemory, state_tensors

F32 = 4


def test_matmul_peak_is_inputs_plus_output() -> None:
    a, b = torch.randn(256, 512), torch.randn(512, 128)
    with PeakMemory([a, b]) as mem:
        c = a @ b
    expected = (256 * 512 + 512 * 128 + 256 * 128) * F32
    result = mem.result()
    assert result["definition"] == DEFINITION == "live_tensor_bytes"
    assert result["max"] == result["per_device"][0]
    assert abs(result["max"] - expected) / expected < 0.02
    assert result["cuda_allocator_peak"] is None
    del c


def test_freed_intermediates_leave_the_live_set() -> None:
    """x (4 MB) -> y = 2x, del x -> z = y + 1, del y: never more than two 4 MB buffers alive."""
    n = 1000 * 1000 * F32
    with PeakMemory([]) as mem:
        x = torch.randn(1000, 1000)
        y = x * 2
        del x
        z = y + 1
        del y
        w = z + 1
        del z
    assert mem.result()["max"] == 2 * n
    del w


def test_views_and_inplace_results_count_once() -> None:
    with LiveTensorTracker() as tracker:
        x = torch.zeros(1000, 250)          # 1 MB
        v = x.view(250, 1000).t()            # same storage
        x.add_(1.0)                          # in place, same storage
        v.mul_(2.0)
    assert tracker.max_bytes == 1000 * 250 * F32
    del v


def test_linear_training_step_counts_state_activations_and_grads() -> None:
    """Linear(100->50), batch 64, SGD: the step's peak = params + batch + output + grads (+ small temps)."""
    lin = torch.nn.Linear(100, 50)
    x = torch.randn(64, 100)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    params = (100 * 50 + 50) * F32
    with PeakMemory(state_tensors(lin, opt, (x,))) as mem:
        lin(x).sum().backward()
        opt.step()
    peak = mem.result()["max"]
    floor = params + 64 * 100 * F32 + params  # weights, batch, grads
    assert floor <= peak <= floor + 64 * 50 * F32 * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_allocator_peak_agrees_with_live_tensor_bytes() -> None:
    device = torch.device("cuda")
    a, b = torch.randn(1024, 2048, device=device), torch.randn(2048, 512, device=device)
    unrelated = torch.empty(64 * 2**20, device=device)  # 256 MB that must not count
    with PeakMemory([a, b], device) as mem:
        c = a @ b
    result = mem.result()
    expected = (1024 * 2048 + 2048 * 512 + 1024 * 512) * F32
    assert abs(result["max"] - expected) / expected < 0.02
    assert abs(result["cuda_allocator_peak"] - result["max"]) / result["max"] < 0.05
    del c, unrelated


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")  # raised by torch.func's import
def test_forward_mode_ad_is_measured() -> None:
    """A jvp through Linear(100->50): primal + tangent outputs are live storages; wrappers are skipped."""
    from torch.func import jvp

    lin = torch.nn.Linear(100, 50)
    x, v = torch.randn(64, 100), torch.randn(64, 100)
    with PeakMemory(list(lin.parameters()) + [x, v]) as mem:
        out, tangent = jvp(lin, (x,), (v,))
    existing = (100 * 50 + 50 + 2 * 64 * 100) * F32
    assert mem.result()["max"] >= existing + 2 * 64 * 50 * F32
    del out, tangent
