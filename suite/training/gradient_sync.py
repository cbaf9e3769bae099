"""Multi-rank training for estimators that write ``.grad`` by hand: gradient sync, noise seeds, metrics.

**The problem.** DDP averages gradients through autograd hooks that fire only during a backward pass it
prepared for (a backward through the DDP wrapper; under Lightning's manual optimisation, only
``manual_backward``). Forward-only estimators (ULR, ALR, XConv, ES, SPSA, FG) write ``p.grad`` directly,
so DDP never sees them: without an explicit sync every rank steps with its own shard's gradient and the
replicas drift apart after the first step.

**The choice: one bucketed all-reduce of ``.grad`` after ``estimate()``, for every estimator (bp too).**
``all_reduce_gradients`` packs every trainable parameter's gradient into flat buckets of about 25 MB
(DDP's default bucket size), all-reduces each bucket with SUM and copies the slices back, weighting each
rank by its number of rows n_r (``sync_after_estimate`` also reduces the loss the same way)::

    g ← Σ_r n_r·g_r / Σ_r n_r    (R ranks, g_r the gradient rank r's estimator wrote for its shard)

Every rank holds the same global batch B (same seeded order) and estimates on its contiguous shard B_r
(``shard_batch``), so Σ_r n_r·mean_{i∈B_r} / |B| = mean_{i∈B}: the synced gradient is the one-rank
gradient of the global batch for bp exactly (up to summation order), and for every estimator whose
estimate is a per-sample mean. ``batch_size`` therefore stays the global batch whatever the devices.

Why not "share the noise seed and reduce only the losses"? That works only for *weight-space*
estimators (ES, SPSA, FG: ĝ = Σ_d c_d·z_d, with c_d a loss difference or a jvp, linear in the batch), where
reducing the K scalars c_d and regenerating z_d from the shared seed gives the same ĝ as reducing .grad.
The *activation-space* LR estimators (ULR, ALR, XConv) inject noise into each sample's activations and
combine it with that sample's stored inputs, ĝ_W = (1/BK) Σ_{i,k} (ℓ_ik − b_i)·(ξ_ik/σ²) x_iᵀ: the terms
depend on rank-local data, so no scalar summary can be rebuilt on another rank. Reducing .grad is the one
scheme correct for all estimators, and its cost — one gradient-sized all-reduce per step, what DDP costs
backprop — is small beside the K noisy forward passes of an LR step. It also keeps the ranks' replicas
bitwise identical (every rank receives the same reduced buffer and applies the same optimizer step),
which the tests check.

Every helper is a no-op returning the local value when torch.distributed is not initialised, so the
single-process path runs the same code. Noise seeds per rank: rank_seeds.py; batch shards and copy-parallel
mode: parallel_modes.py; metrics across ranks: rank_metrics.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket_cap_mb=25


# --------------------------------------------------------------------------- process group
def is_distributed() -> bool:
    """True when a torch.distributed process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _comm_device() -> torch.device:
    """Where collective buffers must live: the current CUDA device for NCCL, else the CPU (gloo)."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------- gradient sync
def _buckets(params: Sequence[torch.Tensor], bucket_bytes: int) -> list[list[torch.Tensor]]:
    """Split parameters, in order, into runs of one (device, dtype) holding at most ``bucket_bytes``
    of gradient each (a single larger gradient gets a bucket of its own)."""
    buckets: list[list[torch.Tensor]] = []
    current: list[torch.Tensor] = []
    size = 0
    for p in params:
        grad = p.grad
        assert grad is not None
        nbytes = grad.numel() * grad.element_size()
        same_kind = not current or (current[0].grad.device == grad.device  # type: ignore[union-attr]
                                    and current[0].grad.dtype == grad.dtype)  # type: ignore[union-attr]
        if current and (not same_kind or size + nbytes > bucket_bytes):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(current)
    return buckets


def all_reduce_gradients(params: Iterable[torch.Tensor] | torch.nn.Module, *, weight: float = 1.0,
                         total_weight: float | None = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                         group: Any = None) -> dict[str, float]:
    """Average ``p.grad`` of every trainable parameter over the ranks, in place:

        g ← Σ_r w_r·g_r / W,   W = Σ_r w_r   (default w_r = 1, W = R: the plain mean)

    ``weight`` is this rank's w_r (its number of samples, so that unequal shards of a global batch give
    the global per-sample mean) and ``total_weight`` W when the caller has already reduced it.
    Gradients are flattened into buckets of at most ``bucket_bytes`` (per device and dtype), each bucket
    is all-reduced with SUM and unflattened back into the ``.grad`` tensors. Every rank must call this
    with the same parameters in the same order (the model's parameter order). A trainable parameter
    without ``.grad`` is an error raised before any collective (it would desynchronise the buckets).

    Returns logs: ``grad_sync_bytes`` (bytes all-reduced by this rank) and ``grad_sync_buckets``.
    Without a process group (or with one rank) it changes nothing and returns zeros.
    """
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    params = [p for p in params if p.requires_grad]
    if not is_distributed():
        return {"grad_sync_bytes": 0.0, "grad_sync_buckets": 0.0}
    for i, p in enumerate(params):
        if p.grad is None:
            raise RuntimeError(f"all_reduce_gradients: trainable parameter #{i} (shape {tuple(p.shape)}) has no "
                               ".grad; every estimator must write a gradient for every trainable parameter")
    if total_weight is None:
        total_weight = dist.get_world_size(group) if weight == 1.0 else reduce_float(weight, "sum")
    total = 0
    buckets = _buckets(params, bucket_bytes)
    with torch.no_grad():
        for bucket in buckets:
            grads = [p.grad for p in bucket]
            flat = torch.cat([g.reshape(-1) for g in grads])  # type: ignore[union-attr]
            comm = flat.to(_comm_device())
            if weight != 1.0:
                comm.mul_(weight)
            dist.all_reduce(comm, op=dist.ReduceOp.SUM, group=group)
            comm.div_(total_weight)
            flat = comm.to(flat.device) if comm.device != flat.device else comm
            offset = 0
            for g in grads:
                n = g.numel()  # type: ignore[union-attr]
                g.copy_(flat[offset:offset + n].view_as(g))  # type: ignore[union-attr]
                offset += n
            total += flat.numel() * flat.element_size()
    return {"grad_sync_bytes": float(total), "grad_sync_buckets": float(len(buckets))}


def sync_estimator_state(estimator: Any) -> None:
    """Keep per-rank estimator state that adapts from local statistics equal on every rank.

    Today this is adaptive σ (``estimator.log_sigma``, one log σ per block, updated from the rank's own
    losses): after each step it is replaced by its mean over ranks, log σ_b ← (1/R) Σ_r log σ_{b,r}, i.e.
    the step uses the mean of the ranks' normalised statistics ρ_{b,r}. Without it the ranks' σ would
    drift apart while their parameters stay equal.
    """
    log_sigma = getattr(estimator, "log_sigma", None)
    if not is_distributed() or not isinstance(log_sigma, list) or not log_sigma:
        return
    t = torch.tensor(log_sigma, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    estimator.log_sigma = [float(v) for v in (t / dist.get_world_size()).tolist()]


def sync_after_estimate(model: torch.nn.Module, estimator: Any, loss: torch.Tensor | float | None = None,
                        samples: int | None = None,
                        bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> tuple[torch.Tensor | float | None, dict[str, float]]:
    """The one call a training step makes on every rank after ``estimate()``, before ``optimizer.step()``.

    With ``samples`` = n_r (this rank's rows) and ``loss`` = its mean loss ℓ_r, one scalar all-reduce gives
    N = Σ n_r and the global mean loss Σ n_r ℓ_r / N (so a divergence check sees the same value on every
    rank); then the gradients are averaged with weights n_r (``all_reduce_gradients``) and the adaptive
    estimator state is averaged (``sync_estimator_state``). Returns ``(global mean loss, logs)``; without
    a process group, ``(loss, {})`` unchanged.
    """
    if not is_distributed():
        return loss, {}
    n = float(samples) if samples is not None else 1.0
    value = float(loss) if loss is not None else 0.0
    t = torch.tensor([value * n, n], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    total_n = float(t[1])
    global_loss = float(t[0]) / total_n
    logs = all_reduce_gradients(model, weight=n, total_weight=total_n, bucket_bytes=bucket_bytes)
    sync_estimator_state(estimator)
    if isinstance(loss, torch.Tensor):
        return torch.tensor(global_loss, dtype=loss.dtype, device=loss.device), logs
    return (global_loss if loss is not None else None), logs


_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


def reduce_float(value: float, op: str = "sum") -> float:
    """``value`` reduced over ranks with ``op`` in sum | max | min | mean (the local value without DDP)."""
    if op not in (*_OPS, "mean"):
        raise ValueError(f"op must be one of sum, max, min, mean; got {op!r}")
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=getattr(dist.ReduceOp, _OPS.get(op, "SUM")))
    out = float(t.item())
    return out / dist.get_world_size() if op == "mean" else out


def gather_floats(value: float) -> list[float]:
    """``[value on rank 0, value on rank 1, ...]`` (``[value]`` without DDP) — e.g. peak memory per rank."""
    if not is_distributed():
        return [float(value)]
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return [float(x.item()) for x in out]


def replicas_identical(model: torch.nn.Module) -> bool:
    """True when every rank holds bitwise the same parameters (collective; True alone).

    Each rank computes a float64 fingerprint of its parameters (Σθ, Σθ², Σ i·θ_i over the flattened
    vector) and the fingerprints' MAX and MIN over ranks must coincide.
    """
    if not is_distributed():
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
        index = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
        fp = torch.stack([flat.sum(), (flat * flat).sum(), (flat * index).sum()]).to(_comm_device())
    hi, lo = fp.clone(), fp.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return bool(torch.equal(hi, lo))
