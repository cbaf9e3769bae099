"""The estimator contract (docs/ARCHITECTURE.md), checked on one model: each check returns
``(passed, detail)`` where a failing detail says what is wrong in one line.

* ``grad``: ``.grad`` set on every trainable parameter (shape, dtype, finite), *replaced*: a call that
  starts from garbage in ``.grad`` gives bit-for-bit the gradient of a call that starts from ``None``;
  a frozen parameter gets none;
* ``loss``: the returned loss is the clean batch loss (1/B) Σ ℓ_i, a detached 0-d tensor, and the logs
  a flat ``dict[str, float]`` holding ``forward_passes``;
* ``determinism``: same seed and call sequence -> bit-identical gradients; a stochastic estimator's stream
  advances (consecutive calls, and other seeds, differ);
* ``resume``: ``state_dict`` after two calls, loaded into a fresh estimator, gives the third call's
  gradient bit for bit;
* ``leftovers``: after a call, parameters are unchanged bit for bit, no autograd graph hangs on the loss
  or the gradients, no hook stays registered, the module tree is the one before, grad mode is restored;
* ``harness``: the estimate works, with the same gradient, under ``FlopCounterMode`` (module hooks), as
  the runner's step-cost probe calls it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .models import Problem

Make = Callable[..., Any]  # fresh estimator: make(seed=...) -> Estimator
Outcome = tuple[bool, str]
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def grads_of(problem: Problem) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.detach().clone() for _, p in problem.parameters]


def call(estimator: Any, problem: Problem, clear: bool = True) -> tuple[Any, dict[str, Any], list[torch.Tensor | None]]:
    """One ``estimate`` on the problem (``.grad`` cleared first unless ``clear=False``, so that only the
    ``grad`` check sees an estimator that accumulates); returns (loss, logs, copies of the grads)."""
    if clear:
        clear_grads(problem.model)
    loss, logs = estimator.estimate(problem.model, problem.loss_fn, problem.inputs, problem.targets)
    return loss, logs, grads_of(problem)


def clear_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


def _max_difference(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            if (x is None) != (y is None):
                return math.inf
            continue
        worst = max(worst, float((x - y).abs().max()))
    return worst


def _identical(a: list[torch.Tensor | None], b: list[torch.Tensor | None]) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
               for x, y in zip(a, b, strict=True))


def check_grad(make: Make, problem: Problem, seed: int) -> Outcome:
    clear_grads(problem.model)
    _, _, fresh = call(make(seed=seed), problem)
    for (name, p), g in zip(problem.parameters, fresh, strict=True):
        if g is None:
            return False, f"no .grad on trainable parameter '{name}'"
        if g.shape != p.shape or g.dtype != p.dtype:
            return False, (f".grad of '{name}' has shape {tuple(g.shape)} / {g.dtype}, the parameter "
                           f"{tuple(p.shape)} / {p.dtype}")
        if not bool(torch.isfinite(g).all()):
            return False, f".grad of '{name}' is not finite"
    for _, p in problem.parameters:
        p.grad = torch.full_like(p, 1e3)
    _, _, over_garbage = call(make(seed=seed), problem, clear=False)
    if not _identical(fresh, over_garbage):
        if not _identical(fresh, call(make(seed=seed), problem)[2]):
            return False, "two fresh estimators with the same seed give different .grad (see determinism)"
        return False, (f"accumulates into .grad instead of replacing it: starting from .grad = 1e3 changes "
                       f"the gradient by up to {_max_difference(fresh, over_garbage):.3g}")
    frozen_name, frozen = problem.parameters[0]
    frozen.requires_grad_(False)
    try:
        clear_grads(problem.model)
        call(make(seed=seed), problem)
        if frozen.grad is not None:
            return False, f"sets .grad on frozen parameter '{frozen_name}' (requires_grad=False)"
    finally:
        frozen.requires_grad_(True)
    return True, f".grad replaced on all {len(fresh)} parameters; frozen one left alone"


def check_loss(make: Make, problem: Problem, seed: int) -> Outcome:
    clean = problem.clean_loss()
    loss, logs, _ = call(make(seed=seed), problem)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        return False, f"returned loss must be a 0-d tensor, got {type(loss).__name__} {getattr(loss, 'shape', '')}"
    if loss.requires_grad:
        return False, "returned loss is attached to an autograd graph (return loss.detach())"
    if not torch.allclose(loss.to(clean.dtype), clean, rtol=1e-9, atol=1e-12):
        return False, f"returned loss {float(loss):.12g} is not the clean batch loss {float(clean):.12g}"
    if not isinstance(logs, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                             for k, v in logs.items()):
        return False, "logs must be a flat dict[str, float]"
    if "forward_passes" not in logs:
        return False, "logs lack 'forward_passes'"
    return True, f"loss = clean loss {float(clean):.6f}; logs a flat dict of {len(logs)} float(s)"


def check_determinism(make: Make, problem: Problem, seed: int, stochastic: bool) -> Outcome:
    first, second = make(seed=seed), make(seed=seed)
    runs = [[call(est, problem)[2] for _ in range(3)] for est in (first, second)]
    for step, (a, b) in enumerate(zip(*runs, strict=True)):
        if not _identical(a, b):
            return False, (f"same seed, call {step + 1}: gradients differ by up to {_max_difference(a, b):.3g} "
                           "(all randomness must come from the seed and the step counter)")
    if not stochastic:
        return True, "3 calls bit-identical (deterministic estimator)"
    if _identical(runs[0][0], runs[0][1]):
        return False, "consecutive calls give the same gradient: the random stream does not advance"
    other = call(make(seed=seed + 1), problem)[2]
    if _identical(other, runs[0][0]):
        return False, "another seed gives the same gradient: the seed is ignored"
    return True, "3 calls bit-identical per seed; stream advances; seeds differ"


def check_resume(make: Make, problem: Problem, seed: int) -> Outcome:
    original = make(seed=seed)
    call(original, problem)
    call(original, problem)
    state = copy.deepcopy(original.state_dict())
    expected = call(original, problem)[2]
    resumed = make(seed=seed)
    resumed.load_state_dict(state)
    got = call(resumed, problem)[2]
    if not _identical(expected, got):
        return False, (f"state_dict after 2 calls loaded into a fresh estimator: call 3 differs by up to "
                       f"{_max_difference(expected, got):.3g} (put the step counter etc. in state_dict)")
    return True, "state_dict after 2 calls resumes call 3 bit for bit"


def _hook_count(model: nn.Module) -> int:
    return sum(len(getattr(m, name, {}) or {}) for m in model.modules() for name in HOOK_DICTS)


def _tree(model: nn.Module) -> list[tuple[str, type]]:
    return [(name, type(m)) for name, m in model.named_modules()]


def check_leftovers(make: Make, problem: Problem, seed: int) -> Outcome:
    model = problem.model
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    hooks, tree, grad_mode = _hook_count(model), _tree(model), torch.is_grad_enabled()
    loss, _, _ = call(make(seed=seed), problem)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), params[n])]
    if changed:
        return False, f"parameter '{changed[0]}' changed during estimate (restore perturbed weights exactly)"
    if isinstance(loss, torch.Tensor) and loss.grad_fn is not None:
        return False, "the returned loss keeps an autograd graph alive (detach it)"
    for name, p in problem.parameters:
        if p.grad is not None and (p.grad.requires_grad or p.grad.grad_fn is not None):
            return False, f".grad of '{name}' is part of an autograd graph (store a detached tensor)"
    if _hook_count(model) != hooks:
        return False, f"{_hook_count(model) - hooks} hook(s) left registered on the model (remove them)"
    if _tree(model) != tree:
        return False, "the model's modules differ after estimate (swapped layers not restored)"
    if torch.is_grad_enabled() != grad_mode:
        return False, "grad mode left changed (use torch.enable_grad()/no_grad() as context managers)"
    return True, "parameters, hooks, modules and grad mode as before; no graph kept"


def check_harness(make: Make, problem: Problem, seed: int) -> Outcome:
    """The runner measures a step's FLOPs under ``FlopCounterMode`` (module hooks around every call):
    the estimate must work there and give the same gradient."""
    from torch.utils.flop_counter import FlopCounterMode

    plain = call(make(seed=seed), problem)[2]
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            counted = call(make(seed=seed), problem)[2]
    except Exception as exc:  # noqa: BLE001 - the failure this check exists for
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return False, f"fails under FlopCounterMode (the runner's FLOP probe): {type(exc).__name__}: {text}"
    if not _identical(plain, counted):
        return False, "gives another gradient under FlopCounterMode (module hooks change the result)"
    return True, f"same gradient under the runner's FLOP counter ({counter.get_total_flops()} FLOPs)"


def run_contract(make: Make, problem: Problem, seed: int, stochastic: bool) -> list[tuple[str, bool, str]]:
    """Every contract check on ``problem``: ``[(check, passed, detail), ...]``. An exception inside a check
    is a failure of that check (its type and first line), never a traceback."""
    checks: list[tuple[str, Callable[[], Outcome]]] = [
        ("grad", lambda: check_grad(make, problem, seed)),
        ("loss", lambda: check_loss(make, problem, seed)),
        ("determinism", lambda: check_determinism(make, problem, seed, stochastic)),
        ("resume", lambda: check_resume(make, problem, seed)),
        ("leftovers", lambda: check_leftovers(make, problem, seed)),
        ("harness", lambda: check_harness(make, problem, seed)),
    ]
    out = []
    for name, check in checks:
        try:
            passed, detail = check()
        except Exception as exc:  # noqa: BLE001 - reported as this check's failure
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            passed, detail = False, f"raised {type(exc).__name__}: {text}"
        finally:
            clear_grads(problem.model)
        out.append((name, passed, detail))
    return out
