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

**Noise seeds across ranks** (``noise_scope`` / ``rank_seed``):

* per-sample (activation) noise — ULR, ALR, XConv: rank r uses ``rank_seed(seed, r)`` (rank 0 keeps
  ``seed``). With a shared seed, sample j of every rank would get the same noise ξ_j, correlating the
  ranks' terms and inflating the variance of the average; independent streams make the R-rank step
  equal to a one-rank step on the global batch whose noise rows are the concatenation of the ranks' noise
  (exactly so when the baseline is per-sample, e.g. ``baseline=clean``).
* weight-space noise — ES, SPSA, FG: every rank keeps the shared ``seed``, so all ranks perturb along the
  same directions z_d and (1/R) Σ_r Σ_d c_{d,r} z_d = Σ_d (mean_r c_{d,r}) z_d is *the* one-rank estimate
  on the global batch (the coefficients are linear in the batch mean loss).
* none — bp.

Each estimator class declares its ``noise_scope`` (``"sample" | "weight" | "none"``; the base class's
default is per-sample: independent noise is never biased, shared noise is only right for weight-space
directions).

**Copy-parallel mode** (``strategy=ddp_copies``, ``parallel_mode``): instead of batch shards, every rank
takes the whole batch with K/R of the estimator's copies (``split_copies``) and its own noise stream; the
same all-reduce gives the K-copy estimate whose copies are the ranks' copies (ALR's copy-level
parallelism). ``check_parallel`` rejects, in one line before any run, what cannot work.

**Metrics across ranks**: memory is reported per rank (``gather_floats``), throughput summed over
ranks and step time the max over ranks (``reduce_float(..., "max")``; ``throughput_across_ranks``).
Every helper is a no-op returning the local value when torch.distributed is not initialised, so the
single-process path runs the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from lrbench.estimators.seeding import counter_seed

DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket_cap_mb=25
_RANK_SALT = 0x52414E4B  # "RANK": keeps rank seeds apart from the estimator's own counter keys


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


# --------------------------------------------------------------------------- noise seeds
def noise_scope(estimator: Any) -> str:
    """``"sample"``, ``"weight"`` or ``"none"``: where the estimator's noise lives, as its class declares
    (``Estimator.noise_scope``); ``estimator`` is an estimator, its class or its registered name."""
    if isinstance(estimator, str):
        from lrbench.estimators import estimator_class

        estimator = estimator_class(estimator)
    return str(estimator.noise_scope)


def rank_seed(seed: int, rank: int) -> int:
    """The noise seed of rank ``rank`` for a per-sample-noise estimator: ``seed`` on rank 0, else
    ``counter_seed(seed, SALT, rank)`` (an independent stream; same (seed, rank) -> same stream)."""
    if rank == 0:
        return int(seed)
    return counter_seed(int(seed), _RANK_SALT, int(rank)) % (2**62)


def seed_for_rank(estimator: Any, seed: int, rank: int, mode: str = "data") -> int:
    """The seed ``estimator`` should use on ``rank``: shared for weight-space noise in data-parallel mode,
    per rank otherwise (in copy-parallel mode every rank must draw its own copies, whatever the scope)."""
    independent = noise_scope(estimator) == "sample" or (mode == "copies" and noise_scope(estimator) != "none")
    return rank_seed(seed, rank) if independent else int(seed)


def apply_rank_seed(estimator: Any, rank: int | None = None, mode: str = "data") -> int:
    """Re-key a built estimator's noise for this rank (``estimator.opts['seed']``); returns the seed used.

    Call once per process after the process group exists (e.g. in ``LightningModule.setup``), before
    the first ``estimate``. The base seed is remembered, so calling it again is idempotent.
    """
    if rank is None:
        rank = world()[0]
    base = getattr(estimator, "_base_seed", None)
    if base is None:
        base = int(estimator.opts.get("seed", 0))
        estimator._base_seed = base
    new = seed_for_rank(estimator, base, rank, mode)
    estimator.opts["seed"] = new
    return new


# --------------------------------------------------------------------------- ranks, batches, launch
SUPPORTED_STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")
COPY_PARALLEL = "ddp_copies"  # lrbench's name: Lightning's ddp, every rank the whole batch, copies split


def parallel_mode(strategy: str) -> str:
    """``"copies"`` for ``strategy=ddp_copies`` (copy-level parallelism), else ``"data"`` (batch shards).

    Copy-parallel: every rank estimates on the whole global batch with K/R of the estimator's copies
    (``copies`` or ``directions``) and its own noise stream; the same .grad all-reduce (equal weights)
    then gives the K-copy estimate, ĝ = (1/R) Σ_r ĝ_{K/R}(B; ξ⁽ʳ⁾) — exactly the K-copy estimate whose
    copies are the ranks' copies concatenated (per-sample baselines none/clean; with ``loo`` each copy's
    baseline uses the other copies of its own rank). ALR's copy-level ("data-level") parallelism.
    """
    return "copies" if str(strategy).lower() == COPY_PARALLEL else "data"


def lightning_strategy(strategy: str) -> str:
    """The strategy name Lightning receives (``ddp_copies`` is Lightning's ``ddp``)."""
    return "ddp" if parallel_mode(strategy) == "copies" else strategy


def copy_option(estimator: Any) -> str | None:
    """The option that counts the estimator's independent copies, as its class declares
    (``Estimator.copies_option``), or ``None``."""
    return estimator.copies_option


def split_copies(estimator: Any, world_size: int) -> Any:
    """Copy-parallel mode: the estimator this rank runs, with K/R of the copies (each entry of a per-block
    list), re-validated by ``Estimator.with_options``."""
    key = copy_option(estimator)
    if world_size <= 1 or key is None:
        return estimator
    value = estimator.opts[key]
    per_rank = [int(v) // world_size for v in value] if isinstance(value, list) else int(value) // world_size
    return estimator.with_options(**{key: per_rank})


def check_parallel(config: dict[str, Any]) -> None:
    """One-line UserError for a multi-device setup lrbench cannot train correctly.

    Supported with ``devices > 1``: Lightning's script-launched DDP (``ddp``, or ``auto``, which picks it)
    and ``ddp_copies`` for estimators with ``copies``/``directions`` divisible by the number of ranks.
    Spawn/fork variants train in child processes whose module never returns its metrics to the process
    that writes the record; FSDP/DeepSpeed shard the parameters, which the .grad all-reduce does not know.
    """
    from lrbench.suite.errors import UserError

    strategy, devices = str(config["strategy"]).lower(), int(config["devices"])
    if strategy == COPY_PARALLEL:
        from lrbench.estimators import estimator_class

        world_size = devices * num_nodes_from_env()
        key = copy_option(estimator_class(config["estimator"]))
        if key is None:
            raise UserError(f"strategy '{COPY_PARALLEL}' splits an estimator's copies over ranks, but "
                            f"'{config['estimator']}' declares no copies option; use strategy ddp")
        value = config["estimator_options"].get(key)
        values = value if isinstance(value, list) else [value]
        if value is None or any(int(v) % world_size for v in values):
            raise UserError(f"strategy '{COPY_PARALLEL}': estimator_options.{key}={value} must be divisible "
                            f"by the {world_size} ranks")
        per_rank = [int(v) // world_size for v in values] if isinstance(value, list) else int(value) // world_size
        try:  # the per-rank options must be valid too (e.g. antithetic pairs)
            estimator_class(config["estimator"])(**{**config["estimator_options"], key: per_rank})
        except ValueError as exc:
            raise UserError(f"strategy '{COPY_PARALLEL}' with {world_size} ranks: {exc}") from None
        return
    if devices > 1 and strategy not in SUPPORTED_STRATEGIES:
        raise UserError(f"strategy '{config['strategy']}' is not supported with devices={devices}; use one of "
                        f"{', '.join((*SUPPORTED_STRATEGIES, COPY_PARALLEL))} (docs/SCALE_OUT.md)")


def global_rank_from_env(devices_per_node: int = 1) -> int:
    """This process's global rank as the launchers announce it, before any process group exists.

    ``RANK`` (torchrun, Lightning's subprocess launcher) > ``SLURM_PROCID`` (srun) >
    ``NODE_RANK·devices_per_node + LOCAL_RANK`` (Lightning's own multi-node launch); 0 otherwise — the
    process that starts a single-node DDP run is rank 0.
    """
    env = os.environ
    for key in ("RANK", "SLURM_PROCID"):
        if env.get(key, "").isdigit():
            return int(env[key])
    node = int(env.get("NODE_RANK", "0") or 0) if env.get("NODE_RANK", "0").isdigit() else 0
    local = int(env.get("LOCAL_RANK", "0")) if env.get("LOCAL_RANK", "0").isdigit() else 0
    return node * max(1, int(devices_per_node)) + local


def local_cuda_index() -> int:
    """The CUDA device of this process: ``LOCAL_RANK`` (torchrun, Lightning) > ``SLURM_LOCALID`` > the
    current device. Data must live there before Lightning's own setup moves the model."""
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return torch.cuda.current_device()


def num_nodes_from_env() -> int:
    """Nodes of a multi-node job: ``LRBENCH_NUM_NODES`` > ``SLURM_NNODES`` (SLURM) >
    ``WORLD_SIZE / LOCAL_WORLD_SIZE`` (torchrun); 1 otherwise (Lightning's ``Trainer(num_nodes=...)``)."""
    env = os.environ
    for key in ("LRBENCH_NUM_NODES", "SLURM_NNODES"):
        if env.get(key, "").isdigit():
            return max(1, int(env[key]))
    if env.get("WORLD_SIZE", "").isdigit() and env.get("LOCAL_WORLD_SIZE", "").isdigit():
        return max(1, int(env["WORLD_SIZE"]) // max(1, int(env["LOCAL_WORLD_SIZE"])))
    return 1


def shard_batch(*tensors: torch.Tensor, rank: int | None = None, world_size: int | None = None,
                mode: str = "data") -> tuple[torch.Tensor, ...]:
    """This rank's rows of a global batch that every rank holds (same data order on every rank).

    Rows are split into R contiguous shards whose sizes differ by at most one (``torch.tensor_split``);
    the sync weights each rank by its row count, so the step is the global per-sample mean. A batch with
    fewer rows than ranks (a last partial batch) is not split: every rank takes all rows. Without a
    process group, or in copy-parallel mode (``mode="copies"``), the tensors are returned unchanged.
    """
    if mode == "copies":
        return tensors
    if rank is None or world_size is None:
        rank, world_size = world()
    if world_size <= 1 or tensors[0].shape[0] < world_size:
        return tensors
    return tuple(torch.tensor_split(t, world_size)[rank] for t in tensors)


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


def throughput_across_ranks(samples: float, seconds: float, steps: int) -> dict[str, float]:
    """Throughput of the whole job: samples summed over ranks, time the slowest rank's.

    samples_per_second = Σ_r samples_r / max_r seconds_r ; step_time_seconds = max_r seconds_r / steps.
    """
    total_samples = reduce_float(samples, "sum")
    slowest = reduce_float(seconds, "max")
    return {"samples_per_second": total_samples / slowest if slowest > 0 else 0.0,
            "step_time_seconds": slowest / steps if steps else 0.0,
            "world_size": float(world()[1])}


def merge_rank_metrics(metrics: dict[str, Any], mode: str = "data") -> dict[str, Any]:
    """Turn one rank's ``metrics`` (RESULTS.md) into the job's, on every rank (collective; no-op alone).

    * ``throughput``: each rank's timed seconds T_r = step_time·timed_steps and samples S_r =
      samples_per_second·T_r; the job's samples_per_second = Σ_r S_r / max_r T_r and step_time_seconds =
      max_r T_r / timed_steps (the slowest rank sets the pace: every step ends in a collective);
      ``flops_per_step`` = Σ_r (the work of one global step; each rank measured its shard). In
      copy-parallel mode every rank saw the whole batch: samples count once, Σ_r S_r / R.
    * ``peak_memory_bytes``: ``per_device`` = [peak of rank 0, peak of rank 1, ...], ``max`` their max,
      ``cuda_allocator_peak`` the max over ranks.
    """
    if not is_distributed():
        return metrics
    out = dict(metrics)
    tp = metrics.get("throughput")
    if isinstance(tp, dict) and tp.get("timed_steps"):
        seconds = float(tp.get("step_time_seconds") or 0.0) * int(tp["timed_steps"])
        samples = float(tp.get("samples_per_second") or 0.0) * seconds
        if mode == "copies":
            samples /= world()[1]
        merged = throughput_across_ranks(samples, seconds, int(tp["timed_steps"]))
        out["throughput"] = {**tp, "samples_per_second": merged["samples_per_second"],
                             "step_time_seconds": merged["step_time_seconds"]}
    if isinstance(tp, dict) and tp.get("flops_per_step") is not None:
        out["throughput"] = {**out["throughput"], "flops_per_step": reduce_float(float(tp["flops_per_step"]), "sum")}
    mem = metrics.get("peak_memory_bytes")
    if isinstance(mem, dict) and mem.get("per_device"):
        per_rank = gather_floats(float(max(mem["per_device"])))
        cuda_peak = mem.get("cuda_allocator_peak")
        cuda_max = reduce_float(float(cuda_peak) if cuda_peak is not None else -1.0, "max")
        out["peak_memory_bytes"] = {**mem, "per_device": [int(v) for v in per_rank], "max": int(max(per_rank)),
                                    "cuda_allocator_peak": int(cuda_max) if cuda_max >= 0 else None}
    return out


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
