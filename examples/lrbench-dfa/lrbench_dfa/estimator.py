"""Direct feedback alignment (Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural
Networks", NeurIPS 2016) as an lrbench estimator.

For a network of L Linear layers a_l = W_l h_{l-1} + b_l, h_l = f_l(a_l) (h_0 the input, a_L the logits)
and the output error e = ∂((1/B) Σ_i ℓ_i)/∂a_L, DFA replaces backprop's δa_l = (W_{l+1}ᵀ δa_{l+1}) ⊙ f_l'(a_l)
by a projection of the output error through a fixed random matrix B_l (d_l × C):

    δa_L = e,    δa_l = (e B_lᵀ) ⊙ f_l'(a_l)  (l < L),    ∇W_l = δa_lᵀ h_{l-1},   ∇b_l = Σ_rows δa_l

so every layer learns from the error directly: one forward pass, no backward pass through the network
(f_l' comes from the elementwise activation alone). B_l has i.i.d. N(0, 1/C) entries drawn from the
estimator's seed and the layer index; it is fixed for the whole run, so the estimate is deterministic
and ``state_dict`` needs only the step counter. The update is *not* the gradient: it aligns with it as
W learns to agree with B (the "alignment"), hence ``biased = True``.

Handled models: an ``nn.Sequential`` (blocks may be nested Sequentials) whose leaves are, in order,
parameter-free preprocessing (e.g. Normalize, Flatten), then Linear layers each followed by elementwise
activations, ending with a Linear. Anything else is refused with one line naming the module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lrbench.estimators import Estimator, EstimatorError
from lrbench.estimators.base import LossFn, set_grad

ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus, nn.Hardtanh,
               nn.Identity)


def leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The non-Sequential modules of a (nested) ``nn.Sequential``, in call order, with their paths."""
    if isinstance(module, nn.Sequential):
        return [leaf for name, child in module.named_children()
                for leaf in leaves(child, f"{prefix}.{name}" if prefix else name)]
    return [(prefix or "<root>", module)]


def plan(model: nn.Module) -> tuple[list[nn.Module], list[tuple[nn.Linear, list[nn.Module]]]]:
    """Split the model into (preprocessing, [(Linear, its activations), ...]) or raise EstimatorError."""
    if not isinstance(model, nn.Sequential):
        raise EstimatorError(f"dfa handles an nn.Sequential of Linear layers and elementwise activations; "
                             f"got {type(model).__name__}")
    prefix: list[nn.Module] = []
    layers: list[tuple[nn.Linear, list[nn.Module]]] = []
    for path, leaf in leaves(model):
        if isinstance(leaf, nn.Linear):
            layers.append((leaf, []))
        elif not layers and not any(True for _ in leaf.parameters()):
            prefix.append(leaf)
        elif layers and isinstance(leaf, ELEMENTWISE):
            layers[-1][1].append(leaf)
        else:
            raise EstimatorError(f"dfa handles an nn.Sequential of Linear layers and elementwise activations "
                                 f"only; module '{path}' is {type(leaf).__name__} (use bp, ulr or alr for this model)")
    if not layers or layers[-1][1]:
        raise EstimatorError("dfa needs the model to end with a Linear layer (the logits)")
    return prefix, layers


class DirectFeedbackAlignment(Estimator):
    """ĝ: DFA's update (module docstring); biased by construction (not the gradient)."""

    name = "dfa"
    description = "direct feedback alignment (Nøkland 2016): output error through fixed random matrices"
    noise_scope = "none"  # the feedback matrices depend on the seed only: every rank draws the same
    biased = True
    options: dict[str, Any] = {}

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self._feedback: dict[tuple[int, int, int], torch.Tensor] = {}

    def feedback(self, layer: int, width: int, classes: int, like: torch.Tensor) -> torch.Tensor:
        """B_l (width × classes), N(0, 1/classes), seeded by (seed, layer); cached."""
        key = (layer, width, classes)
        if key not in self._feedback:
            gen = torch.Generator().manual_seed(int(self.opts["seed"]) * 1_000_003 + layer)
            self._feedback[key] = torch.randn(width, classes, generator=gen, dtype=torch.float64) / classes**0.5
        return self._feedback[key].to(dtype=like.dtype, device=like.device)

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """One DFA update (the module docstring's formulas); ``estimate`` (the base class's template)
        clears ``.grad`` first, checks that every trainable parameter got one and counts the step."""
        prefix, layers = plan(model)
        with torch.no_grad():
            h = inputs
            for module in prefix:
                h = module(h)
        saved = []  # (layer input h_{l-1}, a_l as a leaf, h_l = f(a_l) with its local graph)
        for linear, activations in layers:
            with torch.no_grad():
                a = linear(h)
            with torch.enable_grad():
                # a non-leaf copy of a_l: autograd.grad(out, a) must not be asked of a leaf while module
                # hooks (Lightning's FLOP counter, the memory probe) wrap the activation's inputs
                a = a.detach().requires_grad_(activations != []) * 1.0
                out = a
                for activation in activations:
                    out = activation(out)
            saved.append((h, a, out))
            h = out.detach()
        with torch.enable_grad():
            logits = h.detach().requires_grad_(True)
            loss = loss_fn(logits, targets).mean()
            (error,) = torch.autograd.grad(loss, logits)
        for index, ((linear, _), (h_in, a, out)) in enumerate(zip(layers, saved, strict=True)):
            if index == len(layers) - 1:
                delta = error
            else:
                projected = error @ self.feedback(index, a.shape[-1], error.shape[-1], error).T
                delta = torch.autograd.grad(out, a, projected)[0] if out is not a else projected
            if linear.weight.requires_grad:
                set_grad(linear.weight, delta.T @ h_in)
            if linear.bias is not None and linear.bias.requires_grad:
                set_grad(linear.bias, delta.sum(0))
        return loss.detach(), {"forward_passes": 1.0}

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        return 1.0
