"""Per-module parameter VJP rules (BackPACK-style registry): ``MODULE_RULES: type -> rule``.

A *rule* computes a module's own parameter gradients from the input it was called with and a
``grad_output`` shaped like its output — one local vector-Jacobian product, in closed form::

    rule(module, input, grad_output) -> {param_name: J_θᵀ · grad_output}     (own parameters only)

The LR estimators call a rule with ``grad_output = (ℓ − b) ⊙ score(ε) / (σ·N)``; anything else that
needs "the weight gradient of this layer given its input and an output cotangent" (XConv, tests) may
call the same functions. Public API:

* ``MODULE_RULES``, ``register_rule(*types, replace=False)`` — the registry and its decorator (a second
  rule for a type is an error unless ``replace=True``).
* ``find_rule(module)`` — the rule for a module instance (exact type, or a registered base class whose
  ``forward`` the subclass does not override), or ``None``.
* ``conv_weight_grad(input, weight, grad_output, stride, padding, dilation, groups)`` — the weight VJP of
  an N-d convolution (1-d, 2-d, 3-d), shared by every conv rule.
* ``autograd_rule(module, input, grad_output)`` — the generic local VJP by ``torch.autograd.grad``; used
  only when an estimator's ``fail_mode="autograd"`` allows it.
* ``rule_for(model, name, module, fail_mode)`` — the rule to use or an ``UnsupportedModuleError`` naming
  module path, type, parameter and the supported types.
* ``sum_to_parameter(tensor, view_shape, param_shape)`` — sum a tensor over the dimensions a parameter
  was broadcast over (the VJP of broadcasting).

Rules see only detached tensors and must not build an autograd graph (except ``autograd_rule``).
This module depends on torch only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import EstimatorError, UnsupportedModuleError
from .modules import AddParameter, ClassToken

Rule = Callable[[nn.Module, Any, torch.Tensor], dict[str, torch.Tensor]]

MODULE_RULES: dict[type, Rule] = {}


def register_rule(*module_types: type, replace: bool = False) -> Callable[[Rule], Rule]:
    """Decorator: register ``rule`` for each of ``module_types``. A type that already has a rule is an
    ``EstimatorError`` (a plugin silently replacing a built-in rule would change every estimate) unless
    ``replace=True`` asks for it explicitly."""
    taken = [t.__name__ for t in module_types if t in MODULE_RULES and not replace]
    if taken:
        raise EstimatorError(f"module type {taken[0]} already has an LR rule; pass register_rule(..., "
                             "replace=True) to replace it")

    def deco(rule: Rule) -> Rule:
        for t in module_types:
            MODULE_RULES[t] = rule
        return rule

    return deco


def find_rule(module: nn.Module) -> Rule | None:
    """The registered rule for ``module``: its exact type, else the nearest registered base class —
    but only when the subclass keeps that base class's ``forward`` (a subclass with its own forward
    computes something else and gets no rule)."""
    cls = type(module)
    if cls in MODULE_RULES:
        return MODULE_RULES[cls]
    for base in cls.__mro__[1:]:
        if base in MODULE_RULES and getattr(cls, "forward", None) is getattr(base, "forward", None):
            return MODULE_RULES[base]
    return None


def supported_types() -> list[str]:
    return sorted({t.__name__ for t in MODULE_RULES})


# --------------------------------------------------------------------------- broadcasting helper
def sum_to_parameter(tensor: torch.Tensor, view_shape: Sequence[int], param_shape: Sequence[int]) -> torch.Tensor:
    """VJP of broadcasting: p viewed as ``view_shape`` was broadcast to ``tensor.shape``, so
    ĝ_p = Σ over every dimension where ``view_shape`` is 1 (or missing, on the left) of ``tensor``.
    """
    lead = tensor.dim() - len(view_shape)
    full_view = (1,) * lead + tuple(view_shape)
    dims = [d for d, (v, t) in enumerate(zip(full_view, tensor.shape, strict=True)) if v == 1 and t != 1]
    out = tensor.sum(dim=dims, keepdim=True) if dims else tensor
    return out.reshape(param_shape)


# --------------------------------------------------------------------------- Linear
@register_rule(nn.Linear)
def linear_rule(module: nn.Linear, input: torch.Tensor, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """v = x Wᵀ + b over any leading dims:  ĝ_W = Σ_rows g ⊗ x = gᵀX,  ĝ_b = Σ_rows g."""
    g2 = grad_output.reshape(-1, grad_output.shape[-1])
    grads = {"weight": g2.t().mm(input.reshape(-1, input.shape[-1]).to(g2.dtype))}
    if module.bias is not None:
        grads["bias"] = g2.sum(0)
    return grads


# --------------------------------------------------------------------------- convolutions
def conv_weight_grad(input: torch.Tensor, weight: torch.Tensor, grad_output: torch.Tensor,
                     stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                     groups: int) -> torch.Tensor:
    """Weight VJP of an N-d convolution y = W ⋆ x (cross-correlation):

        ĝ_W[o, c, k] = Σ_n Σ_pos g[n, o, pos] · x_pad[n, g(o)·C/G + c, pos·stride + k·dilation]

    i.e. the output cotangent correlated with the (padded) input; computed by aten's
    ``convolution_backward`` with only the weight output requested (works for 1-d, 2-d and 3-d).
    """
    return torch.ops.aten.convolution_backward(
        grad_output, input.to(grad_output.dtype), weight.detach().to(grad_output.dtype), None,
        list(stride), list(padding), list(dilation), False, [0] * len(stride), groups,
        [False, True, False])[1]


@register_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv_rule(module: nn.modules.conv._ConvNd, input: torch.Tensor,
              grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """Conv: ĝ_W = conv_weight(X, g) (see ``conv_weight_grad``); ĝ_b = Σ over rows and positions of g.

    Non-zero padding modes and string padding ('same', 'valid') are applied to the input explicitly,
    exactly as the module's forward does, and the convolution then runs unpadded.
    """
    spatial = input.dim() - 2
    padding: Sequence[int]
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        input = F.pad(input, module._reversed_padding_repeated_twice, mode=mode)
        padding = [0] * spatial
    else:
        padding = module.padding
    grads = {"weight": conv_weight_grad(input, module.weight, grad_output, module.stride, padding,
                                        module.dilation, module.groups)}
    if module.bias is not None:
        grads["bias"] = grad_output.sum(dim=[0, *range(2, grad_output.dim())])
    return grads


# --------------------------------------------------------------------------- affine normalisations
def _layer_norm_hat(module: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """x̂ = (x − mean) / √(var + eps) over the trailing ``normalized_shape`` dims."""
    return F.layer_norm(x, tuple(module.normalized_shape), None, None, module.eps)


def _batch_norm_hat(module: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """x̂ with the statistics the forward used: batch statistics over (rows, positions) in training mode
    or without running stats, else the running statistics."""
    use_batch_stats = module.training or module.running_mean is None
    mean = None if use_batch_stats else module.running_mean
    var = None if use_batch_stats else module.running_var
    return F.batch_norm(x, mean, var, None, None, use_batch_stats, 0.0, module.eps)


def _group_norm_hat(module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """x̂ normalised per (row, group)."""
    return F.group_norm(x, module.num_groups, None, None, module.eps)


_NORMALIZERS: dict[type, Callable[[Any, torch.Tensor], torch.Tensor]] = {
    nn.LayerNorm: _layer_norm_hat,
    nn.BatchNorm1d: _batch_norm_hat,
    nn.BatchNorm2d: _batch_norm_hat,
    nn.BatchNorm3d: _batch_norm_hat,
    nn.GroupNorm: _group_norm_hat,
}


def _affine_view(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """How γ and β broadcast: on the trailing normalised dims (LayerNorm) or on channel dim 1."""
    if isinstance(module, nn.LayerNorm):
        return tuple(module.normalized_shape)
    return (x.shape[1],) + (1,) * (x.dim() - 2)


@register_rule(*_NORMALIZERS)
def affine_norm_rule(module: nn.Module, input: torch.Tensor, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """v = γ ⊙ x̂ + β (LayerNorm, BatchNorm, GroupNorm):  ĝ_γ = Σ g ⊙ x̂,  ĝ_β = Σ g  (sums over every
    dimension γ is broadcast over). x̂ is recomputed from the stored input with the forward's statistics.
    """
    grads: dict[str, torch.Tensor] = {}
    view = _affine_view(module, input)
    if module.weight is not None:
        normalizer = next(fn for t, fn in _NORMALIZERS.items() if isinstance(module, t))
        x_hat = normalizer(module, input.to(grad_output.dtype))
        grads["weight"] = sum_to_parameter(grad_output * x_hat, view, module.weight.shape)
    if module.bias is not None:
        grads["bias"] = sum_to_parameter(grad_output, view, module.bias.shape)
    return grads


# --------------------------------------------------------------------------- embeddings and free parameters
@register_rule(nn.Embedding)
def embedding_rule(module: nn.Embedding, input: torch.Tensor, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """v = W[idx]:  ĝ_W[j] = Σ_{positions with idx = j} g  (scatter-add); the padding_idx row gets 0;
    with ``scale_grad_by_freq`` each row is divided by its count in this call (as autograd does)."""
    idx = input.reshape(-1)
    g2 = grad_output.reshape(idx.numel(), -1)
    grad = torch.zeros(module.num_embeddings, g2.shape[1], dtype=g2.dtype, device=g2.device)
    grad.index_put_((idx,), g2, accumulate=True)       # deterministic on CUDA too (index_add_ is not)
    if module.scale_grad_by_freq:
        counts = torch.bincount(idx, minlength=module.num_embeddings).clamp_min(1)
        grad /= counts.unsqueeze(1).to(grad.dtype)
    if module.padding_idx is not None:
        grad[module.padding_idx] = 0
    return {"weight": grad}


@register_rule(AddParameter)
def add_parameter_rule(module: AddParameter, input: torch.Tensor, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """v = x + p (p broadcast over leading dims):  ĝ_p = Σ over the broadcast dims of g."""
    return {"param": sum_to_parameter(grad_output, module.param.shape, module.param.shape)}


@register_rule(ClassToken)
def class_token_rule(module: ClassToken, input: torch.Tensor, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """v = [c; x] along dim 1:  ĝ_c = Σ_rows g[:, 0, :]."""
    return {"token": grad_output[:, 0].reshape(-1, grad_output.shape[-1]).sum(0)}


@register_rule(nn.PReLU)
def prelu_rule(module: nn.PReLU, input: torch.Tensor, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """v = max(0, x) + a·min(0, x):  ĝ_a = Σ g ⊙ min(0, x) over every dim a is broadcast over
    (a has one entry, or one per channel on dim 1)."""
    count = module.weight.numel()
    view = (count,) + (1,) * (input.dim() - 2) if count > 1 else (1,)
    return {"weight": sum_to_parameter(grad_output * input.to(grad_output.dtype).clamp(max=0), view,
                                       module.weight.shape)}


# --------------------------------------------------------------------------- generic fallback
@dataclass
class CallInputs:
    """Every positional and keyword argument of one module call (kept for ``autograd_rule``)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def autograd_rule(module: nn.Module, input: Any, grad_output: torch.Tensor) -> dict[str, torch.Tensor]:
    """Generic local VJP: ĝ_θ = J_θ f_m(x)ᵀ g by ``torch.autograd.grad`` of ``module.forward(x)`` w.r.t.
    the module's own trainable parameters (recomputes the module's forward once with a graph).

    ``input`` is a tensor or a ``CallInputs``. Hooks of nested modules must be disabled by the caller.
    A parameter the forward does not use gets no entry.
    """
    call = input if isinstance(input, CallInputs) else CallInputs((input,))
    params = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
    with torch.enable_grad():
        out = module.forward(*call.args, **call.kwargs)
        grads = torch.autograd.grad(out, [p for _, p in params], grad_output.to(out.dtype), allow_unused=True)
    return {n: g for (n, _), g in zip(params, grads, strict=True) if g is not None}


FAIL_MODES = ("error", "autograd")


def rule_for(model: nn.Module, module_name: str, module: nn.Module, fail_mode: str) -> Rule:
    """The rule for ``module`` (named ``module_name`` in ``model``), or the generic autograd VJP when
    ``fail_mode == 'autograd'``; otherwise an ``UnsupportedModuleError`` naming path, type, parameter
    and the supported types."""
    rule = find_rule(module)
    if rule is not None:
        return rule
    if fail_mode == "autograd":
        return autograd_rule
    param = next((n for n, p in module.named_parameters(recurse=False) if p.requires_grad), "?")
    raise UnsupportedModuleError(
        f"module '{module_name or '<root>'}' of type {type(module).__name__} owns trainable parameter "
        f"'{param}' but has no LR rule; supported types: {', '.join(supported_types())} "
        "(or pass fail_mode=autograd for a generic local autograd VJP)")


def owns_trainable_parameters(module: nn.Module) -> bool:
    """Whether ``module`` itself (not its children) holds a parameter with requires_grad."""
    return any(p is not None and p.requires_grad for p in module._parameters.values())
