"""XConv: backprop whose conv (and optionally Linear) layers store a sketch ZᵀX instead of their input.

This is still BP: autograd runs end to end, forward outputs and input gradients are exact. Only the
weight gradient of a sketched layer is estimated, from X̃ = s·Z(ZᵀX) (estimators/sketch.py), so the layer
saves for backward its weight (a parameter, no extra memory), the sketch and the probe seed, never X.
The layers are swapped for the duration of ``estimate`` only (``sketched_layers``), and restored even
when the forward raises.

This module depends on torch only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from .base import Estimator, EstimatorError, LossFn, Option
from .masked_relu import MaskedReLU
from .registry import register_estimator
from .seeding import counter_seed
from .sketch import PROBE_DISTS, PROBE_MODES, SEED_BYTES, RowSketch, Sketch, conv_sketch


@dataclass
class LayerRecord:
    """What one swapped layer saved for backward during the last ``estimate`` (summed over its calls).

    ``kind``: conv | linear | relu. ``stored_bytes``: bytes of activations the layer's autograd node saved
    (sketch + seed when sketched, the input X when exact, the packed mask for a relu); ``exact_bytes``:
    what plain BP saves for the same calls (X, or the ReLU output).
    """

    name: str
    kind: str
    exact: bool
    calls: int = 0
    stored_bytes: int = 0
    exact_bytes: int = 0
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class _ConvGeometry:
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


class SketchedConv2d(torch.autograd.Function):
    """y = conv2d(x, W, b) exactly; backward: δx = conv2d_input(W, δy) and δb = Σ δy exact,
    δW = conv2d_weight(X̃, δy) with X̃ = sketch.expand(ZᵀX), E[δW] = conv2d_weight(X, δy)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                geometry: _ConvGeometry, sketch: Sketch, record: LayerRecord) -> torch.Tensor:
        out = F.conv2d(x, weight, bias, geometry.stride, geometry.padding, geometry.dilation, geometry.groups)
        stored = sketch.compress(x)
        ctx.save_for_backward(weight, stored)
        ctx.geometry, ctx.sketch, ctx.x_shape, ctx.has_bias = geometry, sketch, x.shape, bias is not None
        record.stored_bytes += stored.nbytes + SEED_BYTES
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, stored = ctx.saved_tensors
        g: _ConvGeometry = ctx.geometry
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input(ctx.x_shape, weight.to(grad_out.dtype), grad_out, g.stride, g.padding,
                                  g.dilation, g.groups)
        if ctx.needs_input_grad[1]:
            x_tilde = ctx.sketch.expand(stored).to(grad_out.dtype)
            grad_w = conv2d_weight(x_tilde, weight.shape, grad_out, g.stride, g.padding, g.dilation, g.groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


class SketchedLinear(torch.autograd.Function):
    """y = x Wᵀ + b exactly; δx = δy W and δb = Σ δy exact; δW = δYᵀ X̃ with X̃ = s·Z(ZᵀX) along rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                sketch: Sketch, record: LayerRecord) -> torch.Tensor:
        out = F.linear(x, weight, bias)
        stored = sketch.compress(x.reshape(-1, x.shape[-1]))
        ctx.save_for_backward(weight, stored)
        ctx.sketch, ctx.has_bias = sketch, bias is not None
        record.stored_bytes += stored.nbytes + SEED_BYTES
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, stored = ctx.saved_tensors
        rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out @ weight.to(grad_out.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = rows.T @ ctx.sketch.expand(stored).to(grad_out.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(dim=0)
        return grad_x, grad_w, grad_b, None, None


def _explicit_padding(module: nn.Conv2d) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(F.pad amounts applied before the conv, padding passed to the conv) reproducing ``module``.

    Integer zero padding stays inside the conv (the sketched X is the unpadded input); 'same'/'valid' and
    non-zero padding modes are applied with F.pad first, as Conv2d does for padding_mode != 'zeros'.
    """
    if isinstance(module.padding, str):
        pads: list[int] = []
        for k, d in zip(reversed(module.kernel_size), reversed(module.dilation), strict=True):
            total = d * (k - 1) if module.padding == "same" else 0
            pads += [total // 2, total - total // 2]
        return tuple(pads), (0, 0)
    if module.padding_mode != "zeros":
        pads = []
        for p in reversed(module.padding):
            pads += [p, p]
        return tuple(pads), (0, 0)
    return (), tuple(module.padding)


def _sketched_forward(module: nn.Module, record: LayerRecord, sketch_for_call: Any) -> Any:
    """The forward installed on a selected layer while ``sketched_layers`` is active."""
    exact_forward = type(module).forward.__get__(module)

    def forward(x_in: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():  # nothing is saved for backward: plain forward
            return exact_forward(x_in)
        call = record.calls
        record.calls += 1
        record.input_shapes.append(tuple(x_in.shape))
        x = x_in
        if isinstance(module, nn.Conv2d):
            pre_pad, conv_padding = _explicit_padding(module)
            if pre_pad and any(pre_pad):
                mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
                x = F.pad(x_in, pre_pad, mode=mode)
        record.exact_bytes += x.nbytes
        if record.exact:
            record.stored_bytes += x.nbytes
            return exact_forward(x_in)
        sketch = sketch_for_call(call)
        if isinstance(module, nn.Conv2d):
            geometry = _ConvGeometry(tuple(module.stride), conv_padding, tuple(module.dilation), module.groups)
            return SketchedConv2d.apply(x, module.weight, module.bias, geometry, sketch, record)
        return SketchedLinear.apply(x, module.weight, module.bias, sketch, record)

    return forward


def _masked_relu_forward(module: nn.Module, record: LayerRecord) -> Any:
    """The forward installed on an nn.ReLU: exact values, a 1-bit mask saved for backward."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return type(module).forward(module, x)
        record.calls += 1
        record.exact_bytes += x.nbytes
        return MaskedReLU.apply(x, module.inplace, record)

    return forward


@dataclass(frozen=True)
class SketchPlan:
    """Which layers are sketched and how: the options of an ``xconv`` estimator for one step."""

    probes: int
    probe_mode: str
    probe_dist: str
    layers: str
    first_layer_exact: bool
    seed: int
    step: int
    relu_mask: bool = False

    def relus(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """nn.ReLU modules (own forward not overridden) that save a 1-bit mask when ``relu_mask``."""
        if not self.relu_mask:
            return []
        return [(n, m) for n, m in model.named_modules()
                if isinstance(m, nn.ReLU) and type(m).forward is nn.ReLU.forward]

    def selected(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """Conv2d (and Linear with layers=all) modules with a trainable weight, in module order.

        Subclasses that override ``forward`` are left alone (exact): their forward is not a plain conv.
        """
        types: tuple[type, ...] = (nn.Conv2d,) if self.layers == "conv" else (nn.Conv2d, nn.Linear)
        return [(n, m) for n, m in model.named_modules()
                if isinstance(m, types) and m.weight.requires_grad
                and type(m).forward in (nn.Conv2d.forward, nn.Linear.forward)]

    def sketch(self, module: nn.Module, layer: int, call: int) -> Sketch:
        """The sketch of call ``call`` of layer ``layer``; its seed is keyed on (seed, step, layer, call)."""
        seed = counter_seed(self.seed, self.step, layer, call)
        if isinstance(module, nn.Conv2d):
            return conv_sketch(self.probe_mode, self.probes, self.probe_dist, seed)
        return RowSketch(self.probes, self.probe_dist, seed, orthonormal=self.probe_mode == "orthogonal")


@contextlib.contextmanager
def sketched_layers(model: nn.Module, plan: SketchPlan) -> Iterator[list[LayerRecord]]:
    """Install sketched forwards on the layers ``plan`` selects; yield their records; always restore.

    The first selected layer runs exactly (plain autograd) when ``plan.first_layer_exact``. With
    ``plan.relu_mask`` the ReLU modules save a bit-packed mask instead of their output (records of kind
    'relu', after the layers' records).
    """
    records: list[LayerRecord] = []
    installed: list[tuple[nn.Module, bool, Any]] = []

    def install(module: nn.Module, forward: Any) -> None:
        installed.append((module, "forward" in module.__dict__, module.__dict__.get("forward")))
        module.forward = forward

    try:
        for index, (name, module) in enumerate(plan.selected(model)):
            record = LayerRecord(name or "<root>", "conv" if isinstance(module, nn.Conv2d) else "linear",
                                 exact=plan.first_layer_exact and index == 0)
            records.append(record)

            def for_call(call: int, module: nn.Module = module, index: int = index) -> Sketch:
                return plan.sketch(module, index, call)

            install(module, _sketched_forward(module, record, for_call))
        for name, module in plan.relus(model):
            record = LayerRecord(name or "<root>", "relu", exact=False)
            records.append(record)
            install(module, _masked_relu_forward(module, record))
        yield records
    finally:
        for module, had_own, previous in reversed(installed):
            if had_own:
                module.forward = previous
            else:
                del module.forward


@register_estimator
class XConv(Estimator):
    """Backprop with sketched conv inputs: δW = conv2d_weight(s·Z(ZᵀX), δY), unbiased, E over probes Z.

    Stored per sketched conv call (B samples, c input channels, N pixels): gaussian/orthogonal r·B numbers,
    independent c·r·B numbers, plus an 8-byte seed — instead of c·N·B for exact BP. Forward, input and bias
    gradients are exact; with layers=all, Linear layers store ZᵀX (r×d) instead of X (M×d). With relu_mask
    (default) nn.ReLU layers save 1 bit per element instead of their output, which is otherwise the very
    tensor X that the sketch was meant to free (BatchNorm still saves its input, the conv output).
    """

    name = "xconv"
    noise_scope = "sample"
    description = "low-memory backprop: conv layers store a random sketch Z^T X + seed, weight gradient by randomized trace estimation"
    options = {
        "probes": Option(16, "int", "r: probe vectors per sketch", minimum=1),
        "probe_mode": Option("gaussian", "choice", "gaussian (name kept for old configs: the layout, not the "
                             "law; entries follow probe_dist, Rademacher by default): one joint (c·N)×r probe set (r·B numbers); "
                             "independent: one N×r set over pixels shared by channels (c·r·B); orthogonal: "
                             "disjoint orthonormal columns per input channel (r·B, exact at r = c·N)",
                             choices=PROBE_MODES),
        "probe_dist": Option("rademacher", "choice", "law of the probe entries (gaussian/independent modes; "
                             "orthogonal draws Haar columns and refuses a non-default probe_dist)",
                             choices=PROBE_DISTS),
        "layers": Option("conv", "choice", "conv: sketch Conv2d layers; all: also Linear layers (along rows)",
                         choices=("conv", "all")),
        "first_layer_exact": Option(True, "bool", "keep the first selected layer exact (as the paper does)"),
        "relu_mask": Option(True, "bool", "nn.ReLU layers save a 1-bit mask instead of their output (exact); "
                            "without it a ReLU keeps the next conv's input alive and the sketch frees nothing"),
    }

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self.last_records: list[LayerRecord] = []

    def check_options(self) -> None:
        default = self.options["probe_dist"].default
        if self.opts["probe_mode"] == "orthogonal" and self.opts["probe_dist"] != default:
            raise EstimatorError(f"probe_dist={self.opts['probe_dist']} has no effect with probe_mode=orthogonal "
                                 "(Haar-orthonormal columns); drop probe_dist or use probe_mode=gaussian/independent")

    def plan(self) -> SketchPlan:
        o = self.opts
        return SketchPlan(o["probes"], o["probe_mode"], o["probe_dist"], o["layers"], o["first_layer_exact"],
                          o["seed"], self.step, o["relu_mask"])

    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        with sketched_layers(model, self.plan()) as records, torch.enable_grad():
            loss = loss_fn(model(inputs), targets).mean()
            loss.backward()
        self.last_records = records
        layers = [r for r in records if r.kind != "relu"]
        relus = [r for r in records if r.kind == "relu"]
        stored = sum(r.stored_bytes for r in layers)
        exact = sum(r.exact_bytes for r in layers)
        logs = {"forward_passes": 1.0, "stored_bytes": float(stored), "exact_bytes": float(exact),
                "stored_fraction": stored / exact if exact else 1.0,
                "sketched_layers": float(sum(1 for r in layers if not r.exact and r.calls)),
                "relu_mask_bytes": float(sum(r.stored_bytes for r in relus)),
                "relu_exact_bytes": float(sum(r.exact_bytes for r in relus))}
        logs.update({f"stored_bytes/{r.name}": float(r.stored_bytes) for r in layers})
        return loss.detach(), logs

    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """One forward (and one backward), as BP."""
        return 1.0
