"""Output-noise injection by forward hooks, and what each noisy module call leaves behind.

``PerturbationHooks`` puts a forward hook on every perturbable (rule-owning) module. Outside a noisy
pass the hooks do nothing. During a pass, a hook on an *active* module, at each call:

1. draws ε for the whole call in one vectorised draw, keyed on (seed, step, module, call, copy group);
2. records the module's input (detached; the call index counts repeated calls, e.g. an RNN cell);
3. keeps what the gradient will need of ε, per ``NoiseCodec``: the float ε (ULR, stored), its sign
   bit-packed (ALR, stored), or nothing (``noise_storage='seed'``: ε is regenerated from its key);
4. returns v + σ·ε (added in place to the fresh output).

Everything runs under ``torch.no_grad()``: no autograd graph is built.
This module depends on torch only.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .base import EstimatorError
from .noise import NoiseLaw, draw_noise, pack_signs, signs_of, unpack_signs
from .rules import CallInputs, Rule, autograd_rule
from .seeding import counter_seed


@dataclass
class ModuleSlot:
    """A perturbable module: owns trainable parameters and has a rule."""

    index: int                  # position among perturbable modules (part of the noise key)
    name: str
    module: nn.Module
    rule: Rule
    block: int                  # position of its block among the blocks that own trainable parameters
    params: list[tuple[str, nn.Parameter]]

    @property
    def needs_call_inputs(self) -> bool:
        return self.rule is autograd_rule


@dataclass
class PassLayout:
    """Rows of one noisy pass: ``samples × copies``, sample-major; ``group`` is the copy-group counter."""

    samples: int
    copies: int
    group: int

    @property
    def rows(self) -> int:
        return self.samples * self.copies


@dataclass
class CallRecord:
    """One noisy call of a module: its input, the key of its noise and the noise kept (if any)."""

    slot: ModuleSlot
    call_index: int
    input: Any                      # tensor, CallInputs, or the un-replicated prefix when ``shared_input``
    shared_input: bool              # the input was the prefix replicated copy-wise: ``input`` has samples rows
    input_version: int
    key: int
    layout: PassLayout
    unit_shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    kept: torch.Tensor | None       # float ε, packed sign bits, or None

    @property
    def elements(self) -> int:
        return self.layout.rows * math.prod(self.unit_shape)


@dataclass
class NoiseCodec:
    """What of ε is kept until the losses are known, and the score it gives back.

    encoding='full': score = law.score(ε)                (ULR)
    encoding='sign': score = sign(ε) / E|ε|               (ALR; 1 bit per element when stored)
    storage='stored' keeps the float ε or the packed bits; 'seed' keeps nothing and redraws ε.
    """

    law: NoiseLaw
    encoding: str
    storage: str
    antithetic: bool
    qmc: bool

    def draw(self, key: int, layout: PassLayout, unit_shape: tuple[int, ...], dtype: torch.dtype,
             device: torch.device) -> torch.Tensor:
        return draw_noise(self.law, layout.samples, layout.copies, unit_shape, key,
                          antithetic=self.antithetic, qmc=self.qmc, dtype=dtype, device=device)

    def keep(self, eps: torch.Tensor) -> torch.Tensor | None:
        if self.storage == "seed":
            return None
        return eps if self.encoding == "full" else pack_signs(eps)

    def kept_bytes(self, kept: torch.Tensor | None) -> int:
        return 0 if kept is None else kept.numel() * kept.element_size()

    def score(self, rec: CallRecord) -> torch.Tensor:
        """The per-element score of the record's noise, shape ``(rows, *unit_shape)``. It may share
        storage with ``rec.kept``: a record is consumed by its gradient, so callers may scale it in place.
        """
        shape = (rec.layout.rows, *rec.unit_shape)
        if rec.kept is None:
            eps = self.draw(rec.key, rec.layout, rec.unit_shape, rec.dtype, rec.device)
            signs = signs_of(eps) if self.encoding == "sign" else None
        elif self.encoding == "full":
            eps, signs = rec.kept, None
        else:
            eps, signs = None, unpack_signs(rec.kept, shape, rec.dtype)
        if signs is None:
            return self.law.score(eps)
        return signs.div_(self.law.mean_abs)


@dataclass
class NoisyPass:
    """State of the pass in flight."""

    layout: PassLayout
    active: set[int]                           # slot indices that get noise in this pass
    sigma: dict[int, float]                    # slot index -> σ
    step: int
    replicated: weakref.ref | None             # weak ref to the replicated input fed to the pass, so that
    prefix: torch.Tensor | None                # it dies after its first use; ``prefix``: its source rows
    records: list[CallRecord] = field(default_factory=list)
    calls: dict[int, int] = field(default_factory=dict)
    head: int | None = None                    # slot fed ``prefix`` itself as the pass's input (head sharing)
    shrunk: int | None = None                  # slot whose call in flight runs on ``prefix``
    sigma_stat: dict[int, torch.Tensor] = field(default_factory=dict)   # block -> Σ(ε·score − 1) per row


# Modules whose output row n depends on input row n only (deterministically): when such a module's input
# is the pass's prefix replicated copy-wise, its clean output is the same for every copy of a sample.
ROW_WISE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm)


class PerturbationHooks:
    """Context manager installing one forward hook per slot (removed on exit). Between ``begin(pass)``
    and ``end()`` the hooks of the pass's active slots perturb and record; otherwise they do nothing.

    Head sharing: an active row-wise slot (``ROW_WISE_TYPES``, exact type, closed-form rule) called on the
    pass's replicated prefix runs on the prefix itself (B rows instead of B·K: a forward pre-hook swaps
    the input), and its output is replicated copy-wise before the noise is added — the same numbers as
    running it on the replicated input, at 1/K of the cost. When the caller knows that slot is the first
    module of the pass (``NoisyPass.head``), the pass is fed the prefix and nothing is replicated before it.
    """

    def __init__(self, slots: list[ModuleSlot], codec: NoiseCodec, seed: int, track_sigma_stat: bool) -> None:
        self.slots = slots
        self.codec = codec
        self.seed = seed
        self.track_sigma_stat = track_sigma_stat
        self.current: NoisyPass | None = None
        self.handles: list[Any] = []

    def __enter__(self) -> PerturbationHooks:
        for slot in self.slots:
            if self.shares_head(slot):
                self.handles.append(slot.module.register_forward_pre_hook(self._pre_hook(slot)))
            self.handles.append(slot.module.register_forward_hook(
                self._hook(slot), with_kwargs=slot.needs_call_inputs))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.current = None

    def begin(self, noisy_pass: NoisyPass) -> None:
        self.current = noisy_pass

    def end(self) -> NoisyPass:
        assert self.current is not None
        done, self.current = self.current, None
        return done

    def shares_head(self, slot: ModuleSlot) -> bool:
        """Whether ``slot`` can be a pass's head (``NoisyPass.head``): row-wise, with a pre-hook."""
        return type(slot.module) in ROW_WISE_TYPES and not slot.needs_call_inputs

    def _pre_hook(self, slot: ModuleSlot):  # noqa: ANN202 - a torch hook
        def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
            p = self.current
            if p is None or slot.index not in p.active or not args:
                return None
            if p.head == slot.index and args[0] is p.prefix:     # fed the prefix itself
                p.head, p.shrunk = None, slot.index
                return None
            if p.layout.copies > 1 and p.replicated is not None and args[0] is p.replicated():
                p.shrunk = slot.index
                return (p.prefix, *args[1:])
            return None

        return pre_hook

    def _hook(self, slot: ModuleSlot):  # noqa: ANN202 - a torch hook
        def hook(module: nn.Module, *hook_args: Any) -> Any:
            p = self.current
            if p is None or slot.index not in p.active:
                return None
            if slot.needs_call_inputs:
                args, kwargs, output = hook_args
            else:
                (args, output), kwargs = hook_args, {}
            shrunk = p.shrunk == slot.index
            if shrunk:
                p.shrunk = None
            return self._perturb(p, slot, args, kwargs, output, shrunk)

        return hook

    def _perturb(self, p: NoisyPass, slot: ModuleSlot, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any, shrunk: bool = False) -> torch.Tensor:
        """Draw and add the noise of one call; record its input. ``shrunk``: the module ran on the prefix
        (one row per sample); its output is replicated copy-wise in the same op that adds the noise."""
        rows = p.layout.rows
        expected = p.layout.samples if shrunk else rows
        if not isinstance(output, torch.Tensor) or output.dim() == 0 or output.shape[0] != expected:
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise EstimatorError(
                f"module '{slot.name}' ({type(slot.module).__name__}) returned {got}; LR needs a tensor whose "
                f"first dimension is the {expected} rows in flight (batch-first modules)")
        call_index = p.calls.get(slot.index, 0)
        p.calls[slot.index] = call_index + 1
        key = counter_seed(self.seed, p.step, slot.index, call_index, p.layout.group)
        unit_shape = tuple(output.shape[1:])
        eps = self.codec.draw(key, p.layout, unit_shape, output.dtype, output.device)
        if self.track_sigma_stat:
            stat = self.codec.law.log_sigma_score(eps).reshape(rows, -1).sum(1)
            prev = p.sigma_stat.get(slot.block)
            p.sigma_stat[slot.block] = stat if prev is None else prev + stat
        first = args[0] if args else None
        # A generic (autograd-rule) module keeps its own call's inputs, rows and all: its VJP must see the
        # B·K rows it was called with, so it never takes the summed-over-copies shortcut of a shared input.
        shared = shrunk or (not slot.needs_call_inputs and p.replicated is not None and first is not None
                            and first is p.replicated())
        if slot.needs_call_inputs:
            stored: Any = CallInputs(tuple(_detach(a) for a in args), {k: _detach(v) for k, v in kwargs.items()})
            version = -1
        else:
            stored = p.prefix if shared else first.detach()
            version = stored._version
        p.records.append(CallRecord(slot, call_index, stored, shared, version, key, p.layout, unit_shape,
                                    output.dtype, output.device, self.codec.keep(eps)))
        sigma = p.sigma[slot.index]
        if shrunk:                         # v_i + σ·ε_ik for every copy k, written once
            per_sample = (p.layout.samples, p.layout.copies, *unit_shape)
            return torch.add(output.unsqueeze(1), eps.view(per_sample), alpha=sigma).view(rows, *unit_shape)
        if slot.needs_call_inputs:         # an unknown module's output may alias its input
            return output + sigma * eps
        return output.add_(eps, alpha=sigma)


def _detach(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value
