"""Shared helpers for the LR estimator tests: small float64 nets, an autograd reference for the LR
estimate with given noise, and a Monte-Carlo error measure.

Run as a script to print the measurements quoted in the LR tests and the report::

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.helpers.lr_estimates [variance|qmc|speed|memory]
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from lrbench.estimators import get_estimator
from lrbench.estimators.noise import NOISE_LAWS, draw_noise
from lrbench.estimators.rules import owns_trainable_parameters
from lrbench.estimators.seeding import counter_seed


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def mlp(seed: int = 0, width: int = 8) -> nn.Sequential:
    """3 parameter blocks: Linear+Tanh, Linear+LayerNorm+Tanh, Linear (float64)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Linear(6, width), nn.Tanh()),
        nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.Tanh()),
        nn.Linear(width, 3),
    ).double()


def mlp_batch(seed: int = 0, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed + 100)
    return torch.randn(batch, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (batch,), generator=gen)


def flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.requires_grad])


def bp_gradient(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    get_estimator("bp").estimate(model, loss_fn, x, y)
    return flat_grad(model).clone()


def lr_gradient(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, name: str = "ulr",
                **opts) -> torch.Tensor:
    get_estimator(name, **opts).estimate(model, loss_fn, x, y)
    return flat_grad(model).clone()


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return float((estimate - reference).norm() / reference.norm())


def mean_squared_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seeds: range, name: str = "ulr",
                       **opts) -> float:
    """(1/S) Σ_s ‖ĝ_s − g‖² / ‖g‖² over estimator seeds (≈ relative variance when the bias is negligible)."""
    g = bp_gradient(model, cross_entropy, x, y)
    errs = [relative_error(lr_gradient(model, cross_entropy, x, y, name, seed=s, **opts), g) ** 2 for s in seeds]
    return sum(errs) / len(errs)


def reference_global_lr(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, copies: int, sigma: float,
                        seed: int = 0, step: int = 0, baseline: str = "none", noise: str = "gaussian",
                        antithetic: bool = False, qmc: bool = False, sign: bool = False) -> torch.Tensor:
    """The ULR estimate (global injection, one pass) computed independently by autograd:

        ĝ = ∇_θ Σ_calls Σ_rows ⟨v_call(θ_m; X detached), (ℓ − b) ⊙ score(ε) / (σ·N)⟩

    with the engine's noise (same keys), every module's input detached so that only its own
    parameters' local Jacobian enters. ``sign``: ALR's score sign(ε)/E|ε| instead of score(ε).
    """
    law = NOISE_LAWS[noise]
    batch = x.shape[0]
    modules = [m for _, m in model.named_modules() if owns_trainable_parameters(m)]
    index = {id(m): i for i, m in enumerate(modules)}
    calls: dict[int, int] = {}
    pieces: list[tuple[torch.Tensor, torch.Tensor]] = []

    def pre_hook(module, args):
        return tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)

    def hook(module, args, output):
        i = index[id(module)]
        c = calls.get(i, 0)
        calls[i] = c + 1
        eps = draw_noise(law, batch, copies, tuple(output.shape[1:]), counter_seed(seed, step, i, c, 0),
                         antithetic=antithetic, qmc=qmc, dtype=output.dtype, device=output.device)
        pieces.append((output, eps))
        return output.detach() + sigma * eps

    with torch.no_grad():
        clean = loss_fn(model(x), y)
    handles = [m.register_forward_pre_hook(pre_hook) for m in modules]
    handles += [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.enable_grad():
            losses = loss_fn(model(x.repeat_interleave(copies, 0)), y.repeat_interleave(copies, 0)).detach()
            if baseline == "clean":
                losses = losses - clean.repeat_interleave(copies)
            elif baseline == "loo":
                t = losses.view(batch, copies)
                losses = (t - (t.sum(1, keepdim=True) - t) / (copies - 1)).reshape(-1)
            score = (lambda e: torch.where(e > 0, 1.0, -1.0).to(e.dtype) / law.mean_abs) if sign else law.score
            total = sum((v * (score(e) * losses.view(-1, *[1] * (e.dim() - 1)))).sum() for v, e in pieces)
            params = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(total / (sigma * batch * copies), params)
    finally:
        for h in handles:
            h.remove()
    return torch.cat([g.reshape(-1) for g in grads])


def measure_variance_table(copies: int = 64, seeds: int = 24, sigma: float = 1e-3) -> list[tuple[str, str, float]]:
    """Relative MSE of ULR (mlp, batch 8) for each switch combination, global and layer-wise injection."""
    model = mlp()
    x, y = mlp_batch()
    combos = {
        "plain": {},
        "antithetic": {"antithetic": True},
        "qmc": {"qmc": True},
        "clean": {"baseline": "clean"},
        "loo": {"baseline": "loo"},
        "clean+antithetic": {"baseline": "clean", "antithetic": True},
        "clean+qmc": {"baseline": "clean", "qmc": True},
        "antithetic+qmc": {"antithetic": True, "qmc": True},
        "loo+antithetic+qmc": {"baseline": "loo", "antithetic": True, "qmc": True},
    }
    rows = []
    for injection in ("global", "layerwise"):
        for label, opts in combos.items():
            mse = mean_squared_error(model, x, y, range(seeds), copies=copies, sigma=sigma, injection=injection, **opts)
            rows.append((injection, label, mse))
    return rows


def measure_qmc_table(seeds: int = 64, sigma: float = 1e-3) -> list[tuple[str, int, float, float]]:
    """Relative MSE of plain Monte Carlo vs QMC (mlp, batch 8, global injection, clean baseline) for ULR
    and ALR at K ∈ {4, 8, 16, 32, 64}: rows (estimator, K, MSE plain, MSE qmc)."""
    model = mlp()
    x, y = mlp_batch()
    rows = []
    for name in ("ulr", "alr"):
        for copies in (4, 8, 16, 32, 64):
            kw = {"copies": copies, "sigma": sigma, "baseline": "clean"}
            plain = mean_squared_error(model, x, y, range(seeds), name, **kw)
            qmc = mean_squared_error(model, x, y, range(seeds), name, qmc=True, **kw)
            rows.append((name, copies, plain, qmc))
    return rows


def deep_mlp(width: int, depth: int) -> nn.Sequential:
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)]
    return nn.Sequential(*blocks, nn.Linear(width, 10))


def measure_speed(width: int = 256, depth: int = 6, batch: int = 32, copies: int = 32, reps: int = 5) -> None:
    """CPU process time of one estimate: prefix sharing vs full replay, and ULR vs its forward passes."""
    import time

    model = deep_mlp(width, depth)
    x, y = torch.randn(batch, width), torch.randint(0, 10, (batch,))

    def timed(fn) -> float:
        fn()
        start = time.process_time()
        for _ in range(reps):
            fn()
        return (time.process_time() - start) / reps

    with torch.no_grad():
        t_clean = timed(lambda: cross_entropy(model(x), y))
        xr, yr = x.repeat_interleave(copies, 0), y.repeat_interleave(copies, 0)
        t_rows = timed(lambda: cross_entropy(model(xr), yr))
    print(f"forward at B={batch}: {t_clean * 1e3:.2f} ms; at B·K={batch * copies}: {t_rows * 1e3:.2f} ms")
    times = {}
    for label, opts in {"global": {}, "replay": {"injection": "layerwise"},
                        "prefix": {"injection": "layerwise", "prefix_sharing": True}}.items():
        est = get_estimator("ulr", copies=copies, **opts)
        times[label] = timed(lambda est=est: est.estimate(model, cross_entropy, x, y))
        passes = est.forward_passes_per_step(model, batch)
        print(f"ulr {label:7s}: {times[label] * 1e3:7.2f} ms, forward_passes {passes:6.1f}, "
              f"step / (passes × forward at B) = {times[label] / (passes * t_clean):.2f}")
    print(f"global step / (clean + one forward at B·K) = {times['global'] / (t_clean + t_rows):.2f}")
    print(f"prefix sharing speed-up over replay: {times['replay'] / times['prefix']:.2f}x")


def measure_memory(width: int = 256, depth: int = 8, batch: int = 1024, copies: int = 16) -> None:
    """Peak live-tensor bytes of one step (suite.training.metrics.memory) for BP and chunked LR estimators."""
    from lrbench.suite.training.metrics.memory import PeakMemory, state_tensors

    model = deep_mlp(width, depth)
    x, y = torch.randn(batch, width), torch.randint(0, 10, (batch,))

    def peak(name: str, **opts) -> int:
        est = get_estimator(name, **opts)
        est.estimate(model, cross_entropy, x, y)
        with PeakMemory(state_tensors(model, None, (x, y))) as mem:
            est.estimate(model, cross_entropy, x, y)
        return mem.result()["max"]

    bp = peak("bp")
    print(f"bp: {bp} bytes")
    lw = {"copies": copies, "injection": "layerwise", "prefix_sharing": True, "chunk": batch}
    for name, opts in [("ulr", {"copies": copies, "chunk": batch}), ("ulr", lw),
                       ("ulr", {**lw, "noise_storage": "seed"}), ("alr", lw), ("ulr", {**lw, "baseline": "clean"})]:
        p = peak(name, **opts)
        print(f"{name} {opts}: {p} bytes = {p / bp:.3f} x BP")


if __name__ == "__main__":
    torch.set_num_threads(1)
    what = sys.argv[1] if len(sys.argv) > 1 else "variance"
    if what == "variance":
        for injection, label, mse in measure_variance_table():
            print(f"{injection:10s} {label:18s} rel.MSE {mse:.4e}  rel.err {math.sqrt(mse):.4f}")
    elif what == "qmc":
        for name, copies, plain, qmc in measure_qmc_table():
            print(f"{name} K={copies:3d} rel.MSE plain {plain:.4f} qmc {qmc:.4f} ratio {qmc / plain:.3f}")
    elif what == "speed":
        measure_speed()
        measure_speed(width=512, batch=64, copies=16)
    elif what == "memory":
        measure_memory()
    else:
        raise SystemExit("usage: python -m tests.helpers.lr_estimates [variance|qmc|speed|memory]")
