"""The robustness protocol: clean, white-box (FGSM, PGD-L∞, PGD-L2), transfer and corruption accuracies.

On a fixed seeded subset of the test set (``subset_size`` examples drawn by ``randperm(seed=subset_seed)``,
``subset_seed`` = 0 for every run by default so that all models are compared on the same examples and the
same corrupted images), with the model in eval mode and its plain (noise-free) forward:

    clean            acc(f, x)
    fgsm[ε]          acc(f, FGSM_f(x, ε))                    white-box, every ε of the L∞ grid
    pgd_linf[ε]      acc(f, PGD∞_f(x, ε))                    steps, α = step_size_factor·ε/steps, random start
    pgd_l2[ε]        acc(f, PGD2_f(x, ε))                    every ε of the L2 grid
    transfer_fgsm[ε] acc(f, FGSM_g(x, ε)),  transfer_pgd[ε] acc(f, PGD∞_g(x, ε))
                     adversarial examples crafted on the BP-trained surrogate g, evaluated on f (null without g)
    corruptions[c][s] acc(f, c_s(x))                         4 corruptions × severities 1..5

acc(f, x) = (1/n) Σ_i [argmax f(x_i) = y_i]. ``seed`` (the run's seed) seeds the PGD random starts;
the corruption noise is seeded by ``subset_seed`` (data-side randomness, shared by all models). The ε grids default per dataset (``EPS_LINF``/``EPS_L2``) and
every setting can be overridden (``DEFAULT_SETTINGS`` lists them). ε-map keys are ``repr(float(ε))``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lrbench.suite.errors import UserError
from lrbench.suite.training.robustness_eval.attacks import attack_mode, fgsm, pgd
from lrbench.suite.training.robustness_eval.corruptions import CORRUPTIONS, SEVERITY_PARAMS, corrupt

EPS_LINF: dict[str, tuple[float, ...]] = {
    "digits": (0.05, 0.1, 0.13, 0.2, 0.3),
    "mnist": (0.05, 0.1, 0.13, 0.2, 0.3),
    "cifar": (2 / 255, 4 / 255, 8 / 255, 16 / 255),
}
# L2 grids: MNIST's usual 0.5..3 (784 dims); 8x8 digits (64 dims) about √(64/784) ≈ 0.3 of that; CIFAR around
# RobustBench's 0.5.
EPS_L2: dict[str, tuple[float, ...]] = {
    "digits": (0.25, 0.5, 0.75, 1.0, 1.5),
    "mnist": (0.5, 1.0, 1.5, 2.0, 3.0),
    "cifar": (0.125, 0.25, 0.5, 1.0),
}

DEFAULT_SETTINGS: dict[str, Any] = {
    "subset_size": 1000,          # examples of the test set (all of it when smaller); None = all
    "subset_seed": 0,             # the same subset (and corruption noise) for every model; None: ``seed``
    "batch_size": 250,
    "eps_linf": None,             # None: EPS_LINF[dataset family]; FGSM and PGD-L∞
    "eps_l2": None,               # None: EPS_L2[dataset family]
    "transfer_eps": None,         # None: eps_linf
    "fgsm": {},
    "pgd_linf": {"steps": 20, "step_size_factor": 2.5, "random_start": True},
    "pgd_l2": {"steps": 20, "step_size_factor": 2.5, "random_start": True},
    "eot_samples": 1,             # > 1: expectation over the model's test-time randomness
    "corruptions": list(CORRUPTIONS),
    "severities": [1, 2, 3, 4, 5],
    "corruption_params": None,    # None: corruptions.SEVERITY_PARAMS[family]; {name: [p1..p5]} overrides
    "transfer_source": None,      # a label for the surrogate (run id or checkpoint path)
}
_PGD_KEYS = ("steps", "step_size_factor", "random_start")


def dataset_family(dataset: str) -> str | None:
    """'digits' | 'mnist' (MNIST, Fashion-MNIST, KMNIST, sequential MNIST) | 'cifar' (CIFAR, SVHN) | None."""
    name = dataset.lower().replace("-", "").replace("_", "")
    if name.startswith("digits"):
        return "digits"
    if "mnist" in name:
        return "mnist"
    if name.startswith(("cifar", "svhn")):
        return "cifar"
    return None


def _undot(settings: dict[str, Any]) -> dict[str, Any]:
    """{'pgd_linf.steps': 5} -> {'pgd_linf': {'steps': 5}} (one level, merged with a nested dict if given)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        head, dot, tail = str(key).partition(".")
        if dot:
            out[head] = {**(out.get(head) or {}), tail: value}
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**value, **out[key]}
        else:
            out[key] = value
    return out


def resolve_settings(dataset: str, settings: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    """DEFAULT_SETTINGS updated by ``settings`` (nested attack dicts merged, dotted keys such as
    ``pgd_linf.steps`` accepted), grids filled in; UserError if bad."""
    settings = _undot(settings or {})
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise UserError(f"unknown robustness setting(s) {', '.join(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    out = copy.deepcopy(DEFAULT_SETTINGS)
    for key, value in settings.items():
        if key in ("pgd_linf", "pgd_l2", "fgsm") and value is not None:
            bad = sorted(set(value) - set(_PGD_KEYS if key != "fgsm" else ()))
            if bad:
                raise UserError(f"unknown {key} setting(s) {', '.join(bad)}; valid: {', '.join(_PGD_KEYS)}")
            out[key].update(value)
        else:
            out[key] = value
    family = dataset_family(dataset)
    for key, table in (("eps_linf", EPS_LINF), ("eps_l2", EPS_L2)):
        if out[key] is None:
            if family is None:
                raise UserError(f"no default ε grid for dataset '{dataset}' (known: digits, mnist, fmnist, "
                                f"cifar10); give settings['{key}']")
            out[key] = list(table[family])
        out[key] = [float(e) for e in out[key]]
    out["transfer_eps"] = [float(e) for e in (out["eps_linf"] if out["transfer_eps"] is None else out["transfer_eps"])]
    if any(e < 0 for key in ("eps_linf", "eps_l2", "transfer_eps") for e in out[key]):
        raise UserError("ε values must be >= 0")
    bad = sorted(set(out["corruptions"]) - set(CORRUPTIONS))
    if bad:
        raise UserError(f"unknown corruption(s) {', '.join(bad)}; valid: {', '.join(CORRUPTIONS)}")
    given = out["corruption_params"] or {}
    if family is None and set(out["corruptions"]) - set(given):
        raise UserError(f"no default corruption severities for dataset '{dataset}'; give "
                        "settings['corruption_params'] or settings['corruptions'] = []")
    out["corruption_params"] = {name: [float(p) for p in given.get(name, SEVERITY_PARAMS[family or "mnist"][name])]
                                for name in out["corruptions"]}
    if any(not 1 <= s <= len(out["corruption_params"][c]) for c in out["corruptions"] for s in out["severities"]):
        raise UserError("severities must be in 1..5")
    for key in ("pgd_linf", "pgd_l2"):
        if int(out[key]["steps"]) < 1:
            raise UserError(f"{key} steps must be >= 1")
    if int(out["batch_size"]) < 1 or int(out["eot_samples"]) < 1:
        raise UserError("batch_size and eot_samples must be >= 1")
    if out["subset_seed"] is None:
        out["subset_seed"] = seed
    out["dataset"] = dataset
    return out


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """Image classification only: float inputs in [0, 1] (normalisation inside the model), one label each."""
    if not x.is_floating_point() or y.dim() != 1 or len(x) != len(y) or len(x) == 0:
        raise UserError(f"robustness needs float image inputs with one class label each (got inputs "
                        f"{x.dtype} {tuple(x.shape)}, labels {tuple(y.shape)}); token/sequence tasks are not supported")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise UserError(f"robustness needs inputs in [0, 1] with normalisation inside the model; got range "
                        f"[{low:.3g}, {high:.3g}]")


def select_subset(x: torch.Tensor, y: torch.Tensor, size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` of ``randperm(len(x))`` under ``seed`` (all of x, in order, when size is None/≥ len)."""
    if size is None or size >= len(x):
        return x, y
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size].to(x.device)
    return x[index], y[index]


def _device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Σ_i [argmax f(x_i) = y_i] of one batch (eval mode, no gradients)."""
    with torch.no_grad():
        device = _device(model)
        return int((model(x.to(device)).argmax(dim=1) == y.to(device)).sum())


def accuracy_under(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                   attack=None, source: nn.Module | None = None) -> float:
    """acc(f, a_g(x)) batch by batch: ``attack(source, xb, yb)`` crafts on ``source`` (default: the model
    itself, white-box) and the model classifies the result; ``attack=None`` gives the clean accuracy."""
    source = model if source is None else source
    correct = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        if attack is not None:
            device = _device(source)
            xb = attack(source, xb.to(device), yb.to(device))
        correct += _correct(model, xb, yb)
    return correct / max(len(x), 1)


def _key(eps: float) -> str:
    return repr(float(eps))


Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]
# Random-start seeds: seed + offset + (index of ε in the grid); transfer reuses the white-box offsets.
_SEED_OFFSETS = {"fgsm": 0, "pgd_linf": 100, "pgd_l2": 200}


def make_attack(kind: str, cfg: dict[str, Any]) -> Attack:
    """(source, x, y, ε, generator) -> x' for ``kind`` ∈ fgsm | pgd_linf | pgd_l2 with the resolved settings."""
    eot = int(cfg["eot_samples"])
    if kind == "fgsm":
        return lambda f, x, y, eps, g: fgsm(f, x, y, eps=eps, eot_samples=eot)
    opts = cfg[kind]
    return lambda f, x, y, eps, g: pgd(f, x, y, eps=eps, norm=kind.removeprefix("pgd_"), steps=int(opts["steps"]),
                                       step_size_factor=float(opts["step_size_factor"]),
                                       random_start=bool(opts["random_start"]), generator=g, eot_samples=eot)


def eps_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, grid: list[float], *,
              batch_size: int, seed: int, source: nn.Module | None = None) -> dict[str, float]:
    """{repr(ε): acc(f, attack_g(x, ε))} over the grid; the i-th ε's random start is seeded by seed + i."""
    source = model if source is None else source
    curve = {}
    for i, eps in enumerate(grid):
        generator = torch.Generator(device=_device(source)).manual_seed(seed + i)
        curve[_key(eps)] = accuracy_under(model, x, y, batch_size,
                                          lambda f, xb, yb, e=eps, g=generator: attack(f, xb, yb, e, g), source)
    return curve


def robustness_metrics(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, *, dataset: str,
                       settings: dict | None = None, surrogate: nn.Module | None = None,
                       seed: int = 0) -> dict:
    """``metrics.robustness`` of docs/RESULTS.md for ``model`` on (x_test, y_test) (inputs in [0,1]).

    ``surrogate``: a BP-trained model of the same task for the transfer attacks (None → transfer_* are null).
    The model's (and surrogate's) train/eval flags are restored afterwards; no parameter .grad is written.
    """
    cfg = resolve_settings(dataset, settings, seed)
    check_inputs(x_test, y_test)
    x, y = select_subset(x_test, y_test, cfg["subset_size"], cfg["subset_seed"])
    batch = int(cfg["batch_size"])
    eot = int(cfg["eot_samples"])
    pgd_linf = {k: cfg["pgd_linf"][k] for k in _PGD_KEYS}
    pgd_l2 = {k: cfg["pgd_l2"][k] for k in _PGD_KEYS}

    def white_box(kind: str, grid: list[float]) -> dict[str, float]:
        return eps_curve(model, x, y, make_attack(kind, cfg), grid, batch_size=batch,
                         seed=seed + _SEED_OFFSETS[kind])

    def transfer(kind: str) -> dict[str, float] | None:
        if surrogate is None:
            return None
        return eps_curve(model, x, y, make_attack(kind, cfg), cfg["transfer_eps"], batch_size=batch,
                         seed=seed + _SEED_OFFSETS[kind], source=surrogate)

    with contextlib.ExitStack() as stack:
        for m in (model, surrogate):
            if m is not None:
                stack.enter_context(attack_mode(m))
        result: dict[str, Any] = {
            "subset_size": len(x),
            "subset_seed": cfg["subset_seed"],
            "settings": {
                "fgsm": dict(cfg["fgsm"]), "pgd_linf": pgd_linf, "pgd_l2": pgd_l2,
                "transfer_source": (cfg["transfer_source"] or "surrogate") if surrogate is not None else None,
                "dataset": dataset, "eps_linf": cfg["eps_linf"], "eps_l2": cfg["eps_l2"],
                "transfer_eps": cfg["transfer_eps"] if surrogate is not None else None,
                "eot_samples": eot, "batch_size": batch, "severities": list(cfg["severities"]),
                "corruption_params": cfg["corruption_params"],
            },
            "clean": accuracy_under(model, x, y, batch),
            "fgsm": white_box("fgsm", cfg["eps_linf"]),
            "pgd_linf": white_box("pgd_linf", cfg["eps_linf"]),
            "pgd_l2": white_box("pgd_l2", cfg["eps_l2"]),
            # same random-start seeds as white-box: with surrogate = model, transfer = white-box exactly
            "transfer_fgsm": transfer("fgsm"),
            "transfer_pgd": transfer("pgd_linf"),
            "corruptions": {
                name: {str(s): accuracy_under(model, corrupt(x, name, s, seed=cfg["subset_seed"],
                                                             params=cfg["corruption_params"]), y, batch)
                       for s in cfg["severities"]}
                for name in cfg["corruptions"]
            },
        }
    return result
