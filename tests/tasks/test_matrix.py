"""Every task family × every registered estimator: two optimisation steps on CPU with tiny model sizes.

Each step must give every trainable parameter a finite gradient and the parameters must change — or
the estimator must refuse the model at the start with a one-line EstimatorError naming the module.
Estimators are taken from the registry at test time, so newly added ones join the matrix.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from lrbench.estimators import EstimatorError, get_estimator, list_estimators
from lrbench.tasks import get_task, list_tasks

# Tiny sizes of each task (every family and every architecture builder), fast on one CPU core.
TINY: dict[str, dict[str, Any]] = {
    "digits-mlp": {"widths": (8,)},
    "digits-mlp-layernorm": {"widths": (8, 8)},
    "digits-cnn": {"channels": (4, 4)},
    "digits-cnn-batchnorm": {"channels": (4,)},
    "digits-rnn": {"hidden": 8},
    "digits-rnn-lstm": {"hidden": 8, "layers": 2},
    "digits-rnn-elman": {"hidden": 8},
    "digits-vit": {"dim": 8, "depth": 1},
    "digits-vit-conv": {"dim": 8, "depth": 1, "patch": 4},
    "mnist-xconvnet": {"channels": (2, 4, 4)},
    "mnist-vit": {"dim": 8, "depth": 1, "heads": 2},
    "cifar10-resnet5": {"channels": (4, 4, 4, 8)},
    "cifar10-vgg8": {"channels": (2, 2, 4, 4, 4, 4), "hidden": 8},
    "cifar10-convnet": {"channels": (2, 4, 4, 4)},
    "cifar100-resnet9": {"width": 2},
    "shakespeare-rnn": {"embedding": 8, "hidden": 8},
}
SMALL_OPTIONS = {"copies": 4, "probes": 4}
# Refusals an estimator documents (one line naming the module and the alternative), not gaps in its rules.
DOCUMENTED_REFUSALS = {("ulr-block", "train-mode BatchNorm")}
ESTIMATORS = [e["name"] for e in list_estimators()]
# Extra configurations beyond each estimator's defaults (only those whose estimator is registered).
EXTRA_CONFIGS = {"ulr-layerwise": ("ulr", {"injection": "layerwise", "prefix_sharing": True, "baseline": "clean"})}
CONFIGS = {**{name: (name, {}) for name in ESTIMATORS},
           **{key: cfg for key, cfg in EXTRA_CONFIGS.items() if cfg[0] in ESTIMATORS}}


def tiny_batch(task: str, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    spec = get_task(task)
    gen = torch.Generator().manual_seed(1)
    if spec.dataset == "shakespeare":
        x = torch.randint(0, spec.num_classes, (n, 6), generator=gen)
        return x, torch.roll(x, -1, dims=1)
    return torch.rand(n, *spec.input_shape, generator=gen), torch.randint(0, spec.num_classes, (n,), generator=gen)


def small_options(name: str) -> dict[str, Any]:
    declared = next(e for e in list_estimators() if e["name"] == name)["options"]
    return {k: v for k, v in SMALL_OPTIONS.items() if k in declared}


def test_tiny_sizes_cover_every_family_and_builder() -> None:
    families = {get_task(t).family for t in TINY}
    assert families == {"mlp", "cnn", "rnn", "vit"}
    builders = {get_task(t).model_factory for t in TINY}
    assert builders == {s.model_factory for s in list_tasks()}


def two_steps(model: torch.nn.Module, loss_fn: Any, est: Any, x: torch.Tensor, y: torch.Tensor) -> str | None:
    """Two Adam steps; asserts finite gradients on every parameter and that every parameter moved.
    Returns the EstimatorError message when the estimator refuses the model (asserted to be one line
    naming a module of the model), else None."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        try:
            loss, logs = est.estimate(model, loss_fn, x, y)
        except EstimatorError as err:  # allowed only as a clear refusal naming the module
            msg = str(err)
            assert "\n" not in msg and any(f"'{name}'" in msg for name, _ in model.named_modules() if name), msg
            return msg
        assert math.isfinite(float(loss)) and logs["forward_passes"] > 0
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{name} has no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        opt.step()
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True)]
    assert all(changed), [n for (n, _), c in zip(model.named_parameters(), changed, strict=True) if not c]
    return None


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("task", sorted(TINY))
def test_two_steps_change_parameters_with_finite_gradients(task: str, config: str) -> None:
    spec = get_task(task)
    estimator, extra = CONFIGS[config]
    torch.manual_seed(0)
    model = spec.build_model(**TINY[task])
    est = get_estimator(estimator, seed=0, **{**small_options(estimator), **extra})
    refusal = two_steps(model, spec.loss_fn, est, *tiny_batch(task))
    if refusal is not None and (estimator, "train-mode BatchNorm") in DOCUMENTED_REFUSALS:
        assert "train-mode BatchNorm" in refusal and "use ulr" in refusal  # docs/ESTIMATORS.md, ulr-block
        return
    assert refusal is None, f"{estimator} refuses {task}, built only from supported modules: {refusal}"


class Scale(torch.nn.Module):
    """A parametric module no estimator has a rule for (x ⊙ w with a bare parameter)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unknown_module_trains_or_is_refused_with_a_line_naming_it(estimator: str) -> None:
    spec = get_task("digits-mlp")
    torch.manual_seed(0)
    model = torch.nn.Sequential(*spec.build_model(widths=(8,)), Scale(10))
    est = get_estimator(estimator, seed=0, **small_options(estimator))
    refusal = two_steps(model, spec.loss_fn, est, *tiny_batch("digits-mlp"))
    if estimator in ("ulr", "alr"):     # per-module LR rules: Scale has none
        assert refusal is not None and "module '3' of type Scale" in refusal and "'weight'" in refusal


def test_estimator_defaults_are_valid_options_with_one_entry_per_block() -> None:
    for spec in list_tasks():
        model = spec.build_model()
        param_blocks = sum(any(p.requires_grad for p in block.parameters()) for block in model)
        for name, options in spec.estimator_defaults.items():
            if name not in ESTIMATORS:
                continue
            get_estimator(name, **options)          # raises EstimatorError on an unknown/invalid option
            for key in ("copies", "sigma"):
                if isinstance(options.get(key), list):
                    assert len(options[key]) == param_blocks, (spec.name, key)
