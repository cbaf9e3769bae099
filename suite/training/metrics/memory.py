"""Peak training-step memory: ONE definition, the same on CPU and GPU.

Definition (``"live_tensor_bytes"``)::

    peak = max over the operator calls c of the step of  Σ_{s ∈ Live(c)} nbytes(s)

where ``Live(c)`` is the set of tensor *storages* alive right after operator call ``c`` returns, among
the storages the step can see: every storage that existed when the step began and is reachable from
the model (parameters, buffers, ``.grad``), the optimizer state and the batch, plus every storage an
operator produced during the step (forward passes, local VJPs, noise, optimizer update). A storage is
counted once however many tensors (views, in-place results) share it, and leaves ``Live`` as soon as
its last reference dies (checked with a weak reference to the storage before every operator call).
What it does not see: scratch buffers an operator allocates and frees internally, and allocator
rounding/caching. It is therefore a lower bound of the process's real footprint that depends only on
the program (same on every machine, deterministic), which is what makes estimators comparable.

On a GPU the CUDA caching allocator's peak is recorded beside it, on the same footing::

    cuda_allocator_peak = max_memory_allocated − memory_allocated(step start) + Σ nbytes(storages at start)

(``reset_peak_memory_stats`` at the step start), i.e. the allocator's growth during the step on top of the
same starting state; tensors unrelated to the step (a dataset kept on the GPU) do not count. It sees
operator workspaces and the allocator's 512-byte block rounding too, so it is ≥ ``live_tensor_bytes``
and close to it (tests/test_memory.py checks known allocations within a few percent).

Implementation: a ``TorchDispatchMode`` sees every ATen call below autograd (forward, backward and
optimizer kernels alike). Before a call it drops storages whose weak reference expired; after the call
it adds the storages of the outputs and updates the running maximum.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

DEFINITION = "live_tensor_bytes"


def _storage_key(t: torch.Tensor) -> tuple[str, int] | None:
    """(device, data pointer) of ``t``'s storage; None for tensors without real memory (empty, or a
    wrapper such as a forward-mode AD / functorch tensor, whose underlying tensor is seen on its own)."""
    try:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    if ptr == 0 or storage.nbytes() == 0:
        return None
    return (str(storage.device), ptr)


class LiveTensorTracker(TorchDispatchMode):
    """Dispatch mode that tracks the bytes of live tensor storages and their peak (module docstring).

    ``tracker.add_existing(tensors)`` registers storages that exist before the measured region (they count
    from the start); ``tracker.peak_bytes`` is the peak per device type: ``{"cpu": n}`` or ``{"cuda:0": n}``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[tuple[str, int], tuple[StorageWeakRef, int]] = {}
        self.current_bytes: dict[str, int] = {}
        self.peak_bytes: dict[str, int] = {}

    # ------------------------------------------------------------------ bookkeeping
    def _add(self, t: Any) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        key = _storage_key(t)
        if key is None:
            return
        known = self._live.get(key)
        if known is not None and not known[0].expired():
            return  # same storage already counted (view / in-place result)
        if known is not None:  # address reused by a new storage while the old one died
            self._drop(key)
        nbytes = t.untyped_storage().nbytes()
        self._live[key] = (StorageWeakRef(t.untyped_storage()), nbytes)
        device = key[0]
        self.current_bytes[device] = self.current_bytes.get(device, 0) + nbytes
        self.peak_bytes[device] = max(self.peak_bytes.get(device, 0), self.current_bytes[device])

    def _drop(self, key: tuple[str, int]) -> None:
        _, nbytes = self._live.pop(key)
        self.current_bytes[key[0]] -= nbytes

    def _sweep(self) -> None:
        for key in [k for k, (ref, _) in self._live.items() if ref.expired()]:
            self._drop(key)

    def add_existing(self, tensors: Iterable[Any]) -> None:
        """Count storages that already exist (parameters, grads, optimizer state, the batch)."""
        for t in tensors:
            self._add(t)

    # ------------------------------------------------------------------ dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self._sweep()
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self._add(t)
        return out

    @property
    def max_bytes(self) -> int:
        return max(self.peak_bytes.values(), default=0)


def state_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                  batch: Iterable[Any] = ()) -> list[torch.Tensor]:
    """The tensors alive at the start of a training step: parameters, buffers, grads, optimizer state, batch."""
    tensors: list[torch.Tensor] = []
    for p in model.parameters():
        tensors.append(p)
        if p.grad is not None:
            tensors.append(p.grad)
    tensors.extend(model.buffers())
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors.extend(v for v in tree_flatten(state)[0] if isinstance(v, torch.Tensor))
    tensors.extend(t for t in tree_flatten(list(batch))[0] if isinstance(t, torch.Tensor))
    return tensors


class PeakMemory:
    """Context manager measuring one training step; ``result()`` gives the RESULTS.md ``peak_memory_bytes``.

    Usage::

        with PeakMemory(state_tensors(model, opt, (x, y)), device) as mem:
            estimator.estimate(...); opt.step()
        record = mem.result()
    """

    def __init__(self, existing: Iterable[torch.Tensor], device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.tracker = LiveTensorTracker()
        self._existing = list(existing)
        self.cuda_peak: int | None = None
        self._cuda_base = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.tracker.add_existing(self._existing)
        self._existing = []
        if self.device.type == "cuda":
            self._cuda_base = int(torch.cuda.memory_allocated(self.device)) - self.tracker.max_bytes
        self.tracker.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.tracker.__exit__(*exc)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.cuda_peak = int(torch.cuda.max_memory_allocated(self.device)) - self._cuda_base

    def result(self) -> dict[str, Any]:
        """``{"definition", "per_device", "max", "cuda_allocator_peak"}`` (per_device: one entry, this rank)."""
        peak = int(self.tracker.max_bytes)
        return {"definition": DEFINITION, "per_device": [peak], "max": peak, "cuda_allocator_peak": self.cuda_peak}
