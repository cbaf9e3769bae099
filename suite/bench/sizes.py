"""Sizes and estimator settings of one bench run (``--quick`` shrinks every size, never the method)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class NetSize:
    """A bench net's size: ``width`` (MLP hidden units, or CNN channels), ``batch`` B, ``image`` side
    (MLP inputs have 3·image² features; CNN inputs are 3 × image × image)."""

    width: int
    batch: int
    image: int


@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on; recorded in its JSON output.

    speed_*: the ``speed_depth``-block MLP/CNN of the time ratios (``ulr_over_floor``, ``prefix_speedup``…),
    ``copies`` K per block. mem_*: the depth sweep of ``lr_mem_over_bp``, ``mem_copies`` per block and
    ``chunk`` = B / ``mem_chunk_divisor`` noisy rows in flight. xconv_*: ResNet-18 of
    ``xconv_net_mem_saving``. harness_*: ``harness_overhead`` (the speed MLP, ``harness_steps`` steps).
    malloc_tuning: on CPU, ``allocator.tune_glibc_malloc`` before measuring. parallel_*: batch and copies
    of ALR's ``concurrent`` measurement on mnist-vgg8 (``alr_parallel``).
    """

    quick: bool = False
    device: str = "cpu"
    threads: int = 1
    seed: int = 0
    rounds: int = 21
    sigma: float = 0.01
    speed_depth: int = 6
    speed_mlp: NetSize = NetSize(width=256, batch=32, image=16)
    speed_cnn: NetSize = NetSize(width=16, batch=8, image=16)
    copies: int = 32
    mem_depths: tuple[int, ...] = (2, 4, 8, 16)
    mem_mlp: NetSize = NetSize(width=128, batch=512, image=8)
    mem_cnn: NetSize = NetSize(width=16, batch=64, image=16)
    mem_copies: int = 8
    mem_chunk_divisor: int = 4
    xconv_batch: int = 8
    xconv_image: int = 224
    xconv_probes: int = 16
    harness_steps: int = 30
    harness_rounds: int = 3
    parallel_batch: int = 16
    parallel_copies: int = 8
    malloc_tuning: bool = True
    skip: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        """Sizes for ``--quick``: ≲ 2 minutes on 2 CPU cores; same measurements, smaller nets."""
        base: dict[str, Any] = dict(
            quick=True, rounds=5, speed_mlp=NetSize(256, 16, 16), speed_cnn=NetSize(16, 4, 16), copies=16,
            mem_mlp=NetSize(128, 256, 8), mem_cnn=NetSize(16, 32, 16), mem_copies=4, xconv_batch=2,
            harness_steps=12, harness_rounds=2, parallel_batch=8, parallel_copies=4)
        base.update(overrides)
        return cls(**base)

    def net_size(self, purpose: str, family: str) -> NetSize:
        """``purpose`` 'speed' or 'mem', ``family`` 'mlp' or 'cnn'."""
        return getattr(self, f"{purpose}_{family}")

    def mem_chunk(self, family: str) -> int:
        """Noisy rows in flight for the memory sweep: B / ``mem_chunk_divisor`` (at least 1)."""
        return max(1, self.net_size("mem", family).batch // self.mem_chunk_divisor)

    def scaled(self, **overrides: Any) -> BenchConfig:
        return replace(self, **overrides)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["mem_depths"] = list(self.mem_depths)
        out["skip"] = list(self.skip)
        return out


def lr_options(cfg: BenchConfig, *, injection: str = "layerwise", prefix_sharing: bool = True,
               chunk: int | None = None, copies: int | None = None) -> dict[str, Any]:
    """Options of the ULR/ALR estimators under test (one place, so floor and estimator agree)."""
    opts: dict[str, Any] = {"copies": cfg.copies if copies is None else copies, "sigma": cfg.sigma,
                            "injection": injection, "seed": cfg.seed}
    if injection == "layerwise":
        opts["prefix_sharing"] = prefix_sharing
    if chunk is not None:
        opts["chunk"] = chunk
    return opts
