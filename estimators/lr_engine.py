"""The likelihood-ratio engine shared by ``ulr`` and ``alr``: passes, chunks, baselines, gradients.

For a block (or, with global injection, the whole network) with K copies and noise scale σ, the
batch of B samples is replicated sample-major (row = i·K + k, N = B·K rows), the model is run with
noise on every active perturbable module, the per-row losses ℓ are computed, and each module call
gets ONE rule call (a local VJP, ``estimators.rules``) with

    grad_output = (ℓ − b) ⊙ score(ε) / (σ·N)        broadcast over the non-row dims

summed over calls (repeated calls, chunks). No chain rule crosses modules; no autograd graph is
built. What must the model look like?

* global injection: any module tree; every module owning trainable parameters needs a rule and is
  batch-first (its output's first dim is the rows).
* layer-wise injection / prefix sharing: in addition, the model is an ``nn.Sequential`` whose children
  are the blocks, each block maps the previous block's output to the next block's input, and a module
  belongs to one block only.
* BatchNorm with batch statistics (training mode) couples the rows (``estimators.batch_coupling``):
  ``batch_norm=rowwise`` (default) normalises with the statistics of every row in flight and keeps each
  row's own loss (the statistics-detached gradient); ``batch_norm=coupled`` normalises each copy group
  of B rows with its own statistics and weights a row upstream of such a BatchNorm by its copy group's
  loss (BP's gradient, at about B times the variance). Either way every pass carries the whole batch.

Cost: one vectorised noise draw and one rule call per module call; a module fed the replicated
input itself (the first module of a block under prefix sharing, the first layer under global
injection) gets its gradient at B rows, from the cotangent summed over the copies, and its stored
input is the un-replicated prefix. Stored inputs and noise are freed as soon as their chunk's
gradients are computed, so ``chunk`` bounds memory independently of K.

Options (see ``LR_OPTIONS``) — copies/sigma (per block lists have one entry per block owning trainable
parameters), injection, prefix_sharing, antithetic, qmc, baseline (none | clean | loo), adaptive_sigma,
noise law, chunk, noise_storage, fail_mode. Baselines: ``clean`` is the noise-free loss of the sample;
``loo`` the mean loss of the sample's other copies in the chunk (excluding the antithetic partner).
With antithetic pairs a per-sample baseline cancels inside each pair only for a module whose input is
the same in both partners (the first noisy module): (ℓ⁺−b)ε⊗x + (ℓ⁻−b)(−ε)⊗x = (ℓ⁺−ℓ⁻)ε⊗x; downstream
modules see x⁺ ≠ x⁻, so the baseline still reduces their variance. ``qmc`` with ``loo`` (no antithetic)
is refused: a sample's Sobol copies sum to ≈ 0, so the mean of the other copies is correlated with ε_ik
and the estimate is biased by ≈ K/(K−1).

Dropout (``nn.Dropout``): one keyed mask per sample, shared by its clean pass and all its copies
(``estimators.lr_dropout``), so the clean baseline is the loss of the same thinned network.
BatchNorm running statistics are updated once per step, by the clean pass; noisy passes leave them
untouched (snapshot and restore). This module depends on torch only.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .base import (
    Estimator,
    EstimatorError,
    LossFn,
    Option,
    set_grad,
    trainable_parameters,
)
from .batch_coupling import (
    BATCH_NORM_MODES,
    CouplingTracker,
    batch_statistics_norms,
    check_whole_batch_passes,
)
from .lr_dropout import SharedDropoutMasks
from .lr_hooks import CallRecord, ModuleSlot, NoiseCodec, NoisyPass, PassLayout, PerturbationHooks
from .noise import NOISE_LAWS
from .rules import FAIL_MODES, owns_trainable_parameters, rule_for

LR_OPTIONS: dict[str, Option] = {
    "copies": Option(16, "int_or_list", "K: noisy copies per sample (int, or one per parameter-owning block)",
                     minimum=1),
    "sigma": Option(0.01, "float_or_list", "σ: output-noise scale (float, or one per parameter-owning block)",
                    exclusive_minimum=0.0),
    "injection": Option("global", "choice", "global: all modules noisy in one set of passes; "
                        "layerwise: one block noisy at a time, K_b copies each", choices=("global", "layerwise")),
    "prefix_sharing": Option(False, "bool", "layer-wise: compute the clean prefix once at batch size and "
                             "replicate it at the noisy block's input (needs injection=layerwise)"),
    "antithetic": Option(False, "bool", "adjacent copies get ε and −ε (needs an even number of copies)"),
    "qmc": Option(False, "bool", "scrambled Sobol points mapped by the inverse CDF instead of pseudo-random ε"),
    "baseline": Option("none", "choice", "control variate b in (ℓ − b): none, clean (noise-free loss of the "
                       "sample), loo (mean loss of the sample's other copies)", choices=("none", "clean", "loo")),
    "adaptive_sigma": Option(False, "bool", "learn log σ per block by ∂E[L]/∂log σ = E[(ℓ−b)(Σ ε·score − d)]"),
    "sigma_lr": Option(0.01, "float", "adaptive σ: step on log σ per estimate (normalised gradient)", minimum=0.0),
    "sigma_min": Option(1e-6, "float", "adaptive σ: lower clamp", exclusive_minimum=0.0),
    "sigma_max": Option(1.0, "float", "adaptive σ: upper clamp", exclusive_minimum=0.0),
    "noise": Option("gaussian", "choice", "noise law (unit variance)", choices=tuple(NOISE_LAWS)),
    "chunk": Option(0, "int", "max rows in flight per noisy pass (0: all copies at once); copy-aligned",
                    minimum=0),
    "noise_storage": Option("stored", "choice", "stored: keep the noise until the losses are known; seed: "
                            "regenerate it from its counter-based key (zero storage, bit-identical)",
                            choices=("stored", "seed")),
    "fail_mode": Option("error", "choice", "module without a rule: error, or a generic local autograd VJP",
                        choices=FAIL_MODES),
    "batch_norm": Option("rowwise", "choice", "train-mode BatchNorm: rowwise (each row its own loss: the "
                         "statistics-detached gradient, batch mean/var held constant) or coupled (each copy group "
                         "of the batch normalised with its own statistics, rows upstream weighted by their group's "
                         "loss: BP's gradient, about B times the variance)", choices=BATCH_NORM_MODES, added=True),
}


# ============================================================================ model structure
@dataclass
class ModelPlan:
    """Blocks of the model, the perturbable modules and which parameter-owning block each is in."""

    blocks: list[nn.Module]
    param_blocks: list[int]          # indices into ``blocks`` of the blocks owning trainable parameters
    slots: list[ModuleSlot]
    batchnorms: list[nn.Module]      # whose running statistics noisy passes must not move

    def slots_of(self, block_position: int) -> list[ModuleSlot]:
        return [s for s in self.slots if s.block == block_position]


def build_plan(model: nn.Module, fail_mode: str, layerwise: bool) -> ModelPlan:
    """Find blocks (children of an ``nn.Sequential``, else the model itself) and perturbable modules."""
    sequential = isinstance(model, nn.Sequential)
    if layerwise and not sequential:
        raise EstimatorError(f"injection=layerwise needs the model to be an nn.Sequential of blocks, got "
                             f"{type(model).__name__}; use injection=global")
    blocks = list(iter(model)) if sequential else [model]
    param_blocks = [i for i, b in enumerate(blocks) if any(p.requires_grad for p in b.parameters())]
    owner: dict[int, int] = {}
    for position, i in enumerate(param_blocks):
        for m in blocks[i].modules():
            if id(m) in owner and owner[id(m)] != position and layerwise and owns_trainable_parameters(m):
                raise EstimatorError(f"module {type(m).__name__} is used in blocks {param_blocks[owner[id(m)]]} "
                                     f"and {i}; layer-wise injection needs each module in one block")
            owner.setdefault(id(m), position)
    slots: list[ModuleSlot] = []
    batchnorms: list[nn.Module] = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            batchnorms.append(m)
        if not owns_trainable_parameters(m):
            continue
        params = [(n, p) for n, p in m._parameters.items() if p is not None and p.requires_grad]
        slots.append(ModuleSlot(len(slots), name, m, rule_for(model, name, m, fail_mode), owner.get(id(m), 0),
                                params))
    return ModelPlan(blocks, param_blocks, slots, batchnorms)


def per_block(name: str, value: Any, count: int) -> list[Any]:
    """Broadcast an int/float option to one value per parameter-owning block, or check a list's length."""
    if isinstance(value, list):
        if len(value) != count:
            raise EstimatorError(f"option '{name}' has {len(value)} entries but the model has {count} blocks "
                                 "that own trainable parameters (give one per block, or a single number)")
        return list(value)
    return [value] * count


def first_module(module: nn.Module) -> nn.Module:
    """The module an ``nn.Sequential`` (nested, with Sequential's own ``forward``) calls first on its
    input; ``module`` itself otherwise."""
    while isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward and len(module):
        module = module[0]
    return module


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return x


@contextlib.contextmanager
def frozen_batchnorm_stats(batchnorms: Sequence[nn.Module]) -> Iterator[None]:
    """Noisy passes must not move BatchNorm running statistics: snapshot them and restore on exit."""
    saved = [(b, b.clone()) for m in batchnorms
             for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    try:
        yield
    finally:
        for buf, copy in saved:
            buf.copy_(copy)


# ============================================================================ chunks
def chunk_layouts(batch: int, copies: int, chunk: int, min_copies: int, pair: int) -> list[tuple[int, int, int]]:
    """Split B samples × K copies into passes ``(sample_start, sample_stop, copies_in_pass)`` of at most
    ``chunk`` rows (0 = one pass). Copy groups are near-equal, multiples of ``pair`` (2 with antithetic)
    and hold at least ``min_copies`` copies (loo needs the sample's other copies in the same pass), so a
    pass may exceed ``chunk`` by less than one legal copy group when the numbers do not divide.
    """
    if chunk <= 0 or chunk >= batch * copies:
        return [(0, batch, copies)]
    samples_per = batch if chunk >= batch * min_copies else max(1, chunk // min_copies)
    units = copies // pair
    units_per = max(math.ceil(min_copies / pair), (chunk // samples_per) // pair, 1)
    min_units = math.ceil(min_copies / pair)
    pieces = max(1, min(math.ceil(units / units_per), units // max(min_units, 1)))
    sizes = [(units // pieces + (1 if j < units % pieces else 0)) * pair for j in range(pieces)]
    return [(s0, min(batch, s0 + samples_per), k) for s0 in range(0, batch, samples_per) for k in sizes]


def per_row_losses(loss_fn: LossFn, outputs: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
    losses = loss_fn(outputs, targets)
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != (rows,):
        got = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise EstimatorError(f"loss_fn must return per-sample losses of shape ({rows},) "
                             f"(reduction='none'), got {got}")
    return losses.detach()


def baseline_values(kind: str, losses: torch.Tensor, samples: int, copies: int, antithetic: bool,
                    clean: torch.Tensor | None) -> torch.Tensor | None:
    """b per row. clean: ℓ_clean(i). loo: (Σ_k ℓ_ik − ℓ_ik [− ℓ_partner]) / (K − 1 [− 1])."""
    if kind == "none":
        return None
    if kind == "clean":
        assert clean is not None
        return clean.repeat_interleave(copies)
    table = losses.view(samples, copies)
    others = table.sum(1, keepdim=True) - table
    count = copies - 1
    if antithetic:
        others = others - table.view(samples, copies // 2, 2).flip(2).reshape(samples, copies)
        count -= 1
    return (others / count).reshape(-1)


# ============================================================================ per-step accumulators
@dataclass
class StepTotals:
    grads: dict[int, torch.Tensor] = field(default_factory=dict)   # id(param) -> gradient
    rows: int = 0
    noise_bytes: int = 0
    noise_elements: int = 0
    passes: int = 0
    sigma_moments: dict[int, list[float]] = field(default_factory=dict)   # block -> [Σcs, Σc², Σs²]


# ============================================================================ the estimator
class LikelihoodRatioEstimator(Estimator):
    """Output-noise LR estimator; subclasses choose ``encoding`` ('full' = ULR, 'sign' = ALR)."""

    noise_scope = "sample"
    copies_option = "copies"
    # σ = 1e-3 in float64 (the smoothing bias O(σ²) lies far below the Monte-Carlo error), the settings
    # the tasks train with otherwise (clean baseline, layer-wise injection with prefix sharing)
    conformance_options = {"copies": 16, "sigma": 1e-3, "baseline": "clean", "injection": "layerwise",
                           "prefix_sharing": True}

    encoding: ClassVar[str] = "full"
    options = LR_OPTIONS

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self.log_sigma: list[float] | None = None
        self.block_costs: dict[int, list[float]] = {}

    # ------------------------------------------------------------------ options
    def check_options(self) -> None:
        o = self.opts
        copies = o["copies"] if isinstance(o["copies"], list) else [o["copies"]]
        if o["injection"] == "global" and isinstance(o["copies"], list):
            raise EstimatorError("a per-block list of copies needs injection=layerwise (global uses one K)")
        if o["prefix_sharing"] and o["injection"] != "layerwise":
            raise EstimatorError("prefix_sharing needs injection=layerwise (global injection has no clean prefix)")
        if o["antithetic"] and any(k % 2 for k in copies):
            raise EstimatorError(f"antithetic needs an even number of copies, got copies={o['copies']}")
        need = self.min_copies_per_pass()
        if o["baseline"] == "loo" and any(k < need for k in copies):
            raise EstimatorError(f"baseline=loo needs at least {need} copies per sample"
                                 f"{' with antithetic pairs' if o['antithetic'] else ''}, got copies={o['copies']}")
        if o["sigma_min"] > o["sigma_max"]:
            raise EstimatorError(f"sigma_min={o['sigma_min']} exceeds sigma_max={o['sigma_max']}")
        if o["qmc"] and o["baseline"] == "loo" and not o["antithetic"]:
            raise EstimatorError("qmc with baseline=loo is biased by about K/(K-1) (a sample's Sobol copies sum "
                                 "to ~0); use baseline=loo without qmc, qmc with baseline=clean, or add antithetic=true")
        self.refuse_unswitched({"adaptive_sigma": ("sigma_lr", "sigma_min", "sigma_max")})

    def min_copies_per_pass(self) -> int:
        if self.opts["baseline"] == "loo":
            return 4 if self.opts["antithetic"] else 2
        return 2 if self.opts["antithetic"] else 1

    def codec(self) -> NoiseCodec:
        o = self.opts
        return NoiseCodec(NOISE_LAWS[o["noise"]], self.encoding, o["noise_storage"], o["antithetic"], o["qmc"])

    # ------------------------------------------------------------------ σ
    def current_sigmas(self, count: int) -> list[float]:
        if self.opts["adaptive_sigma"]:
            if self.log_sigma is None:
                self.log_sigma = [math.log(s) for s in per_block("sigma", self.opts["sigma"], count)]
            per_block("sigma", self.log_sigma, count)
            return [math.exp(v) for v in self.log_sigma]
        return [float(s) for s in per_block("sigma", self.opts["sigma"], count)]

    def adapt_sigmas(self, moments: dict[int, list[float]]) -> None:
        """log σ_b ← clamp(log σ_b − η·ρ_b): ρ_b = Σ c·s / √(Σc²·Σs²) ∈ [−1, 1] is the normalised estimate
        of ∂E[L]/∂log σ_b = E[(ℓ−b)·Σ(ε·score(ε) − 1)], c = ℓ − b, s = Σ over the block's units."""
        assert self.log_sigma is not None
        lo, hi = math.log(self.opts["sigma_min"]), math.log(self.opts["sigma_max"])
        for blk, (cs, cc, ss) in moments.items():
            rho = cs / math.sqrt(cc * ss) if cc > 0 and ss > 0 else 0.0
            self.log_sigma[blk] = min(hi, max(lo, self.log_sigma[blk] - self.opts["sigma_lr"] * rho))

    # ------------------------------------------------------------------ the job
    def _estimate(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.opts
        layerwise = o["injection"] == "layerwise"
        plan = build_plan(model, o["fail_mode"], layerwise)
        count = len(plan.param_blocks)
        copies = per_block("copies", o["copies"], count)
        sigmas = self.current_sigmas(count)
        sigma_of = {s.index: sigmas[s.block] for s in plan.slots}
        batch = inputs.shape[0]
        totals = StepTotals()
        norms = batch_statistics_norms(model)
        coupling = CouplingTracker(norms, o["qmc"]) if norms and o["batch_norm"] == "coupled" else None
        ctx = _StepContext(self, model, loss_fn, targets, batch, sigma_of, totals, bool(norms), coupling)
        with (torch.no_grad(), SharedDropoutMasks(model, batch, o["seed"], self.step) as ctx.masks,
              PerturbationHooks(plan.slots, self.codec(), o["seed"], o["adaptive_sigma"]) as hooks,
              coupling or contextlib.nullcontext()):
            ctx.hooks = hooks
            if layerwise and o["prefix_sharing"]:
                clean_losses = self._prefix_sharing_step(ctx, plan, inputs, copies)
            else:
                clean_losses = per_row_losses(loss_fn, model(inputs), targets, batch)
                groups = ([(plan.slots_of(j), copies[j]) for j in range(count)] if layerwise
                          else [(plan.slots, copies[0] if copies else 1)])
                with frozen_batchnorm_stats(plan.batchnorms):
                    for slots, k in groups:
                        ctx.noisy_passes(model, inputs, k, slots, clean_losses, first_module(model))
        by_id = {id(p): p for _, p in trainable_parameters(model)}
        for pid, grad in totals.grads.items():
            set_grad(by_id[pid], grad)
        logs = {"forward_passes": self._forward_passes(plan, model), "rows": float(totals.rows),
                "noise_bytes": float(totals.noise_bytes), "noise_elements": float(totals.noise_elements),
                "noisy_passes": float(totals.passes)}
        if o["adaptive_sigma"]:
            logs.update({f"sigma_block{j}": s for j, s in enumerate(sigmas)})
            self.adapt_sigmas(totals.sigma_moments)
        return clean_losses.mean().detach(), logs

    def _prefix_sharing_step(self, ctx: _StepContext, plan: ModelPlan, inputs: torch.Tensor,
                             copies: list[int]) -> torch.Tensor:
        """One clean pass block by block; block b's noisy passes start from its clean input, replicated,
        and each block input is dropped once its block is done. With baseline=clean the clean losses are
        needed before any gradient: without a chunk limit the block inputs of the one clean pass are kept
        (one activation per block at batch size B); with a chunk limit (bounded memory) a first clean
        pass gives the losses and the prefix is recomputed block by block (+1 forward pass; BatchNorm
        statistics are moved by the first pass only)."""
        blocks, model = plan.blocks, ctx.model
        measure = id(model) not in self.block_costs
        costs: list[float] = []

        def clean_block(i: int, h: torch.Tensor) -> torch.Tensor:
            if not measure:
                return blocks[i](h)
            from torch.utils.flop_counter import FlopCounterMode
            with FlopCounterMode(display=False) as counter:
                out = blocks[i](h)
            costs.append(float(counter.get_total_flops()))
            return out

        position = {b: j for j, b in enumerate(plan.param_blocks)}
        clean_first = self.opts["baseline"] == "clean"
        keep_inputs = clean_first and self.opts["chunk"] == 0
        recompute = clean_first and not keep_inputs
        clean_losses = None
        if recompute:          # bounded memory: losses from a first clean pass, the prefix recomputed below
            clean_losses = per_row_losses(ctx.loss_fn, run_blocks(blocks, inputs), ctx.targets, ctx.batch)
            ctx.masks.restart()
        block_inputs: list[torch.Tensor | None] = []
        h = inputs
        with frozen_batchnorm_stats(plan.batchnorms) if recompute else contextlib.nullcontext():
            for i in range(len(blocks)):
                if not keep_inputs and i in position:
                    with frozen_batchnorm_stats(plan.batchnorms):
                        ctx.noisy_passes(lambda x, i=i: run_blocks(blocks[i:], x), h, copies[position[i]],
                                         plan.slots_of(position[i]), clean_losses, first_module(blocks[i]))
                block_inputs.append(h if keep_inputs else None)
                h = clean_block(i, h)
        if clean_losses is None:
            clean_losses = per_row_losses(ctx.loss_fn, h, ctx.targets, ctx.batch)
        del h
        if measure:
            self.block_costs[id(model)] = costs
        if keep_inputs:
            with frozen_batchnorm_stats(plan.batchnorms):
                for i, j in position.items():
                    source, block_inputs[i] = block_inputs[i], None
                    ctx.noisy_passes(lambda x, i=i: run_blocks(blocks[i:], x), source, copies[j],
                                     plan.slots_of(j), clean_losses, first_module(blocks[i]))
        return clean_losses

    # ------------------------------------------------------------------ accounting
    def forward_passes_per_step(self, model: nn.Module, batch_size: int) -> float:
        """1 clean pass + Σ over noisy passes of rows/B × (share of the network the pass runs).

        global: 1 + K; layer-wise replay: 1 + Σ_b K_b; prefix sharing: 1 + Σ_b K_b·c_{b:}/c where c are
        the per-block FLOPs measured in the last step on this model (equal block costs before that),
        +1 with baseline=clean and a chunk limit (the prefix is recomputed, see ``_prefix_sharing_step``)."""
        return self._forward_passes(build_plan(model, "autograd", self.opts["injection"] == "layerwise"), model)

    def _forward_passes(self, plan: ModelPlan, model: nn.Module) -> float:
        o = self.opts
        layerwise = o["injection"] == "layerwise"
        copies = per_block("copies", o["copies"], len(plan.param_blocks))
        if not layerwise:
            return 1.0 + float(copies[0] if copies else 0)
        if not o["prefix_sharing"]:
            return 1.0 + float(sum(copies))
        clean_passes = 2.0 if o["baseline"] == "clean" and o["chunk"] > 0 else 1.0
        costs = self.block_costs.get(id(model))
        if not costs or len(costs) != len(plan.blocks) or sum(costs) <= 0:
            costs = [1.0] * len(plan.blocks)
        total = sum(costs)
        return clean_passes + sum(k * sum(costs[i:]) / total for k, i in zip(copies, plan.param_blocks, strict=True))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["log_sigma"] = None if self.log_sigma is None else list(self.log_sigma)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        log_sigma = state.get("log_sigma")
        self.log_sigma = None if log_sigma is None else [float(v) for v in log_sigma]

    # ------------------------------------------------------------------ module gradients
    def slot_gradients(self, codec: NoiseCodec, records: list[CallRecord], weights: torch.Tensor,
                       sigma: float) -> dict[str, torch.Tensor]:
        """Σ over a module's calls of rule(module, X, (ℓ − b) ⊙ score(ε) / (σ·N)); ``weights`` = (ℓ − b)/N."""
        total: dict[str, torch.Tensor] = {}
        for rec in records:
            slot = rec.slot
            score = codec.score(rec)
            w = ((weights if rec.weights is None else rec.weights) / sigma).to(score.dtype)
            inp = rec.input
            if rec.shared_input:       # Σ_k w_ik·score_ik per sample: one batched GEMV, no B·K temporary
                s, k = rec.layout.samples, rec.layout.copies
                grad_output = torch.bmm(w.view(s, 1, k), score.view(s, k, -1)).view(s, *rec.unit_shape)
            else:
                grad_output = score.mul_(w.view(-1, *([1] * len(rec.unit_shape))))
            if rec.input_version >= 0 and inp._version != rec.input_version:
                raise EstimatorError(f"the input of module '{slot.name}' was modified in place after the call; "
                                     "LR needs it intact (avoid in-place ops on a module's input)")
            grads = (rec.rule or slot.rule)(slot.module, inp, grad_output)
            if not rec.shared_input and counts_indices(slot.module):
                # the rule divides by index counts over the pass's samples·copies rows; BP counts over the
                # B samples, and every copy of a sample carries the same indices: counts are K× too large
                grads = {name: g * rec.layout.copies for name, g in grads.items()}
            for name, g in grads.items():
                total[name] = g if name not in total else total[name] + g
            rec.input = rec.kept = rec.weights = None   # consumed: free the stored input and noise
            del score, grad_output, inp
        return total

    def module_gradients(self, codec: NoiseCodec, records: list[CallRecord], weights: torch.Tensor,
                         sigma_of: dict[int, float]) -> list[tuple[ModuleSlot, dict[str, torch.Tensor]]]:
        """Per module (in slot order), its gradient from this pass. Sequential; ALR may run them concurrently."""
        by_slot: dict[int, list[CallRecord]] = {}
        for rec in records:
            by_slot.setdefault(rec.slot.index, []).append(rec)
        ordered = [by_slot[i] for i in sorted(by_slot)]
        return [(recs[0].slot, self.slot_gradients(codec, recs, weights, sigma_of[recs[0].slot.index]))
                for recs in ordered]


def counts_indices(module: nn.Module) -> bool:
    """An ``nn.Embedding(scale_grad_by_freq=True)``: its gradient is divided by index counts in the batch."""
    return isinstance(module, nn.Embedding) and bool(module.scale_grad_by_freq)


class _StepContext:
    """What the noisy passes of one ``estimate`` call share."""

    def __init__(self, est: LikelihoodRatioEstimator, model: nn.Module, loss_fn: LossFn, targets: torch.Tensor,
                 batch: int, sigma_of: dict[int, float], totals: StepTotals, batch_statistics: bool = False,
                 coupling: CouplingTracker | None = None) -> None:
        self.est, self.model, self.loss_fn, self.targets = est, model, loss_fn, targets
        self.batch, self.sigma_of, self.totals = batch, sigma_of, totals
        self.batch_statistics, self.coupling = batch_statistics, coupling   # see ``estimators.batch_coupling``
        self.codec = est.codec()
        self.hooks: PerturbationHooks | None = None
        self.masks: SharedDropoutMasks | None = None

    def noisy_passes(self, forward: Callable[[torch.Tensor], torch.Tensor], source: torch.Tensor, copies: int,
                     slots: list[ModuleSlot], clean_losses: torch.Tensor | None,
                     entry: nn.Module | None = None) -> None:
        """All passes of one injection group (the whole net, or one block): K copies of each of the B
        samples of ``source``, in copy-aligned chunks; gradients are computed as soon as a chunk's losses
        are known and its stored inputs/noise are freed. ``entry``: the module ``forward`` calls first on
        its input (``first_module``); when it is an active row-wise slot, ``forward`` is fed the
        un-replicated prefix and that slot replicates its own output (head sharing, ``PerturbationHooks``)."""
        est, opts, hooks = self.est, self.est.opts, self.hooks
        assert hooks is not None
        if not slots:
            return
        active = {s.index for s in slots}
        head = next((s.index for s in slots if s.module is entry and hooks.shares_head(s)), None)
        total_rows = self.batch * copies
        layouts = chunk_layouts(self.batch, copies, opts["chunk"], est.min_copies_per_pass(),
                                2 if opts["antithetic"] else 1)
        if self.batch_statistics:
            check_whole_batch_passes(layouts, self.batch, opts["chunk"], est.min_copies_per_pass())
        coupling = self.coupling
        counting = next((s.name for s in slots if counts_indices(s.module)), None)
        if counting is not None and layouts[0][1] - layouts[0][0] < self.batch:
            raise EstimatorError(f"module '{counting}' is an Embedding with scale_grad_by_freq, whose gradient "
                                 f"needs index counts over the whole batch; raise chunk to at least "
                                 f"{self.batch * est.min_copies_per_pass()} rows (or 0)")
        for group, (s0, s1, k) in enumerate(layouts):
            layout = PassLayout(s1 - s0, k, group)
            prefix = source[s0:s1]
            fed_prefix = head is not None and k > 1
            replicated = [prefix if fed_prefix or k == 1 else prefix.repeat_interleave(k, dim=0)]
            targets = self.targets[s0:s1].repeat_interleave(k, dim=0)
            noisy = NoisyPass(layout, active, self.sigma_of, est.step,
                              None if fed_prefix else weakref.ref(replicated[0]), prefix,
                              head=head if fed_prefix else None)
            hooks.begin(noisy)
            assert self.masks is not None
            self.masks.noisy(s0, s1, k)
            if coupling is not None:
                coupling.begin(layout.samples, k, noisy.records)
            try:       # hand over the only reference: the replicated input dies once its consumers are done
                outputs = forward(replicated.pop())
            finally:
                hooks.end()
                self.masks.clean()
                if coupling is not None:
                    coupling.end()
            noisy.prefix = None
            losses = per_row_losses(self.loss_fn, outputs, targets, layout.rows)
            del outputs
            clean = None if clean_losses is None else clean_losses[s0:s1]
            base = baseline_values(opts["baseline"], losses, layout.samples, k, opts["antithetic"], clean)
            centered = losses if base is None else losses - base
            weights = centered / total_rows
            coupled = coupling is not None and coupling.couple(noisy.records, centered, total_rows)
            self._record_totals(noisy, centered, coupled)
            for slot, grads in est.module_gradients(self.codec, noisy.records, weights, self.sigma_of):
                for name, param in slot.params:
                    if name in grads:
                        g = grads[name].to(param.dtype)
                        acc = self.totals.grads.get(id(param))
                        self.totals.grads[id(param)] = g if acc is None else acc.add_(g)
            noisy.records.clear()

    def _record_totals(self, noisy: NoisyPass, centered: torch.Tensor, coupled: bool = False) -> None:
        """Counters, and the adaptive-σ moments: per row, or per copy group when the pass's rows are
        coupled (group loss × the group's Σ(ε·score − 1), the replica-level identity)."""
        t = self.totals
        t.rows += noisy.layout.rows
        t.passes += 1
        for rec in noisy.records:
            t.noise_bytes += self.codec.kept_bytes(rec.kept)
            t.noise_elements += rec.elements
        samples, copies = noisy.layout.samples, noisy.layout.copies
        c = centered.double().view(samples, copies).sum(0) if coupled else centered.double()
        for blk, stat in noisy.sigma_stat.items():
            s = stat.double().view(samples, copies).sum(0) if coupled else stat.double()
            m = t.sigma_moments.setdefault(blk, [0.0, 0.0, 0.0])
            m[0] += float((c * s).sum())
            m[1] += float((c * c).sum())
            m[2] += float((s * s).sum())
