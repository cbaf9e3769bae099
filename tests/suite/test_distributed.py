"""Gradient sync across ranks (suite/training/gradient_sync.py): 2 CPU processes with gloo.

What is asserted, per registered estimator (bp, ulr, alr, es, spsa, fg, xconv — whichever exist):

1. after N optimizer steps the parameters are bitwise IDENTICAL on both ranks;
2. the 2-rank run equals (float64, 1e-10) the one-process simulation of it: g = ½(ĝ(B₀; ξ⁽⁰⁾) + ĝ(B₁; ξ⁽¹⁾))
   with each shard's noise drawn from that rank's seed (``seed_for_rank``) — i.e. the all-reduce is exact;
3. for bp (no noise) and the weight-space estimators (es, spsa, fg: shared seed, same directions on every
   rank) the 2-rank run equals the plain 1-rank run on the global batch B = B₀ ∪ B₁.
   For the per-sample-noise LR estimators (ulr, alr, xconv) a plain 1-rank run cannot match: it draws
   one noise tensor for all |B| rows from one key, whose second half no seed of a |B|/2-row draw
   reproduces. What is equal instead is (2): the 1-rank estimate on B whose noise rows are the
   concatenation [ξ⁽⁰⁾; ξ⁽¹⁾] — a per-sample mean, hence ½ Σ_r ĝ(B_r; ξ⁽ʳ⁾) — and that is what (2) checks.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lrbench.estimators import ESTIMATORS, Estimator, estimator_class, get_estimator
from lrbench.estimators.registry import _load_builtin_estimators
from lrbench.suite.cli import preflight as PF
from lrbench.suite.errors import UserError
from lrbench.suite.training import gradient_sync as D
from lrbench.suite.training import launcher_env as LE
from lrbench.suite.training import parallel_modes as PM
from lrbench.suite.training import rank_metrics as RM
from lrbench.suite.training import rank_seeds as RS

WORLD = 2
STEPS = 4
GLOBAL_BATCH = 16
SEED = 7
CANDIDATES = ("bp", "ulr", "alr", "xconv", "es", "spsa", "fg")
SMALL = {"copies": 4, "directions": 2, "probes": 3, "layers": "all", "first_layer_exact": False, "sigma": 0.1}

_load_builtin_estimators()
REGISTERED = [n for n in CANDIDATES if n in ESTIMATORS]
COPY_SPLIT = [n for n in REGISTERED if PM.copy_option(estimator_class(n)) is not None]


def _options(name: str) -> dict:
    declared = estimator_class(name).all_options()
    return {k: v for k, v in SMALL.items() if k in declared}


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    return (torch.randn(GLOBAL_BATCH, 6, generator=gen, dtype=torch.float64),
            torch.randint(0, 3, (GLOBAL_BATCH,), generator=gen))


def _shard(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return PM.shard_batch(t, rank=rank, world_size=world)[0]


def _train_rank(name: str, rank: int, world: int, mode: str = "data", **extra: object) -> list[torch.Tensor]:
    """What each rank runs: estimate on its shard (or, copy-parallel, on the whole batch with K/R copies),
    all-reduce .grad (and adaptive state), SGD step."""
    model = _model()
    est = get_estimator(name, seed=SEED, **_options(name), **extra)
    if mode == "copies":
        est = PM.split_copies(est, world)
    RS.apply_rank_seed(est, rank, mode)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(STEPS):
        x, y = _batch(step)
        xs, ys = PM.shard_batch(x, y, rank=rank, world_size=world, mode=mode)
        loss, _ = est.estimate(model, _loss_fn, xs, ys)
        D.sync_after_estimate(model, est, loss, len(xs))
        opt.step()
    params = [p.detach().clone() for p in model.parameters()]
    if getattr(est, "log_sigma", None) is not None:
        params.append(torch.tensor(est.log_sigma, dtype=torch.float64))
    return params


def _simulate_ranks(name: str, world: int, mode: str = "data") -> list[torch.Tensor]:
    """One process: the mean over simulated ranks of their shard estimates, each with its rank's seed
    (copy-parallel: whole-batch estimates with K/R copies each)."""
    model = _model()
    ests = []
    for rank in range(world):
        est = get_estimator(name, seed=SEED, **_options(name))
        if mode == "copies":
            est = get_estimator(name, seed=SEED, **{**_options(name), PM.copy_option(est): SMALL[PM.copy_option(est)] // world})
        RS.apply_rank_seed(est, rank, mode)
        ests.append(est)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(STEPS):
        x, y = _batch(step)
        total = [torch.zeros_like(p) for p in model.parameters()]
        for rank, est in enumerate(ests):
            xs, ys = PM.shard_batch(x, y, rank=rank, world_size=world, mode=mode)
            est.estimate(model, _loss_fn, xs, ys)
            for t, p in zip(total, model.parameters(), strict=True):
                t += p.grad
        for t, p in zip(total, model.parameters(), strict=True):
            p.grad = t / world
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _worker(rank: int, world: int, init_file: str, out_dir: str, names: list[str]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = {name: _train_rank(name, rank, world) for name in names}
        for name in COPY_SPLIT:  # copy-parallel (ddp_copies): whole batch, K/R copies per rank
            out[f"{name}-copies"] = _train_rank(name, rank, world, mode="copies")
        if "ulr" in names:  # adaptive σ: log σ is learned from each rank's own losses, then averaged
            out["ulr-adaptive"] = _train_rank("ulr", rank, world, adaptive_sigma=True, sigma_lr=0.5)
        # metric helpers: sum / max / gather over ranks
        out["_metrics"] = {"sum": D.reduce_float(rank + 1.0, "sum"), "max": D.reduce_float(rank + 1.0, "max"),
                           "mean": D.reduce_float(rank + 1.0, "mean"), "gather": D.gather_floats(10.0 * rank),
                           "throughput": RM.throughput_across_ranks(8.0 * (rank + 1), 2.0 + rank, 4),
                           "merged": RM.merge_rank_metrics({
                               "throughput": {"samples_per_second": 4.0 * (rank + 1), "step_time_seconds": 0.5,
                                              "timed_steps": 4, "warmup_steps": 1,
                                              "flops_per_step": 10.0},
                               "peak_memory_bytes": {"definition": "live_tensor_bytes", "per_device": [100 + rank],
                                                     "max": 100 + rank, "cuda_allocator_peak": None}}),
                           "identical": D.replicas_identical(_model()),
                           "different": D.replicas_identical(nn.Linear(2, 2) if rank else _model())}
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    start = time.perf_counter()
    mp.spawn(_worker, args=(WORLD, str(tmp / "init"), str(tmp), REGISTERED), nprocs=WORLD, join=True)
    print(f"2-rank gloo run of {REGISTERED}: {time.perf_counter() - start:.1f} s")
    return {r: torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)}


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.ddp
@pytest.mark.parametrize("name", REGISTERED)
def test_ranks_identical_and_equal_to_simulation(two_rank_results: dict[int, dict], name: str) -> None:
    r0, r1 = two_rank_results[0][name], two_rank_results[1][name]
    assert all(torch.equal(a, b) for a, b in zip(r0, r1, strict=True)), f"{name}: ranks diverged by {_max_diff(r0, r1)}"
    start = [p.detach() for p in _model().parameters()]
    assert _max_diff(r0, start) > 1e-4, f"{name}: parameters did not move"
    simulated = _simulate_ranks(name, WORLD)
    assert _max_diff(r0, simulated) < 1e-10, f"{name}: 2-rank run != simulation ({_max_diff(r0, simulated)})"


@pytest.mark.ddp
@pytest.mark.parametrize("name", [n for n in REGISTERED if RS.noise_scope(n) in ("none", "weight")])
def test_shared_noise_estimators_match_one_rank_global_batch(two_rank_results: dict[int, dict], name: str) -> None:
    one_rank = _train_rank(name, 0, 1)  # no process group: plain run on the whole global batch
    diff = _max_diff(two_rank_results[0][name], one_rank)
    assert diff < 1e-10, f"{name}: 2-rank vs 1-rank global batch differ by {diff}"


@pytest.mark.ddp
@pytest.mark.parametrize("name", [n for n in REGISTERED if RS.noise_scope(n) == "sample"])
def test_per_sample_noise_differs_across_ranks(two_rank_results: dict[int, dict], name: str) -> None:
    """Rank 1 draws its own noise: a run where both shards use rank 0's seed ends elsewhere."""
    model = _model()
    est = get_estimator(name, seed=SEED, **_options(name))
    x, y = _batch(0)
    est.estimate(model, _loss_fn, _shard(x, 0, WORLD), _shard(y, 0, WORLD))
    g_shared = [p.grad.clone() for p in model.parameters()]
    est1 = get_estimator(name, seed=SEED, **_options(name))
    RS.apply_rank_seed(est1, 1)
    est1.estimate(model, _loss_fn, _shard(x, 0, WORLD), _shard(y, 0, WORLD))
    assert _max_diff(g_shared, [p.grad for p in model.parameters()]) > 1e-6


@pytest.mark.ddp
@pytest.mark.parametrize("name", COPY_SPLIT)
def test_copy_parallel_ranks_identical_and_equal_to_simulation(two_rank_results: dict[int, dict], name: str) -> None:
    """ddp_copies: each rank the whole batch with K/R copies and its own stream; the mean is the K-copy
    estimate whose copies are the ranks' copies."""
    r0, r1 = two_rank_results[0][f"{name}-copies"], two_rank_results[1][f"{name}-copies"]
    assert all(torch.equal(a, b) for a, b in zip(r0, r1, strict=True))
    simulated = _simulate_ranks(name, WORLD, mode="copies")
    assert _max_diff(r0, simulated) < 1e-10
    assert _max_diff(r0, two_rank_results[0][name]) > 1e-6  # not the data-parallel run


@pytest.mark.ddp
@pytest.mark.skipif("ulr" not in REGISTERED, reason="ulr not registered")
def test_adaptive_sigma_stays_equal_across_ranks(two_rank_results: dict[int, dict]) -> None:
    r0, r1 = two_rank_results[0]["ulr-adaptive"], two_rank_results[1]["ulr-adaptive"]
    assert all(torch.equal(a, b) for a, b in zip(r0, r1, strict=True))
    log_sigma = r0[-1]
    assert float((log_sigma - torch.log(torch.tensor(SMALL["sigma"], dtype=torch.float64))).abs().max()) > 1e-3  # σ moved


@pytest.mark.ddp
def test_metric_reductions(two_rank_results: dict[int, dict]) -> None:
    m = two_rank_results[0]["_metrics"]
    assert m == two_rank_results[1]["_metrics"]
    assert m["sum"] == 3.0 and m["max"] == 2.0 and m["mean"] == 1.5 and m["gather"] == [0.0, 10.0]
    # samples 8 + 16 = 24 over the slowest rank's 3 s; step time 3 s / 4 steps
    assert m["throughput"] == {"samples_per_second": 8.0, "step_time_seconds": 0.75, "world_size": 2.0}
    # each rank timed 4 steps in 2 s; 8 + 16 samples over 2 s
    assert m["merged"]["throughput"] == {"samples_per_second": 12.0, "step_time_seconds": 0.5, "timed_steps": 4,
                                         "warmup_steps": 1, "flops_per_step": 20.0}
    assert m["merged"]["peak_memory_bytes"]["per_device"] == [100, 101]
    assert m["merged"]["peak_memory_bytes"]["max"] == 101
    assert m["merged"]["peak_memory_bytes"]["cuda_allocator_peak"] is None
    assert m["identical"] is True and m["different"] is False


def test_single_process_helpers_are_local() -> None:
    model = _model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    assert D.all_reduce_gradients(model) == {"grad_sync_bytes": 0.0, "grad_sync_buckets": 0.0}
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert D.world() == (0, 1) and D.reduce_float(3.0, "max") == 3.0 and D.gather_floats(2.0) == [2.0]


def test_buckets_respect_size_and_order() -> None:
    params = [nn.Parameter(torch.zeros(n)) for n in (10, 10, 30, 5)]
    for p in params:
        p.grad = torch.zeros_like(p)
    buckets = D._buckets(params, bucket_bytes=80)  # 20 float32 per bucket
    assert [[p.numel() for p in b] for b in buckets] == [[10, 10], [30], [5]]
    mixed = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    for p in mixed:
        p.grad = torch.zeros_like(p)
    assert len(D._buckets(mixed, bucket_bytes=10**6)) == 2


def test_seed_policy() -> None:
    assert RS.noise_scope("ulr") == "sample" and RS.noise_scope("es") == "weight" and RS.noise_scope("bp") == "none"
    class Undeclared(Estimator):  # a new estimator that declares nothing is per-sample: never biased
        name = "someday-new"

    assert RS.noise_scope(Undeclared) == "sample" and PM.copy_option(Undeclared) is None
    assert RS.rank_seed(5, 0) == 5 and RS.rank_seed(5, 1) != 5 and RS.rank_seed(5, 1) == RS.rank_seed(5, 1)
    assert len({RS.rank_seed(5, r) for r in range(64)}) == 64
    assert RS.seed_for_rank("spsa", 5, 3) == 5
    est = get_estimator("bp", seed=3)
    assert RS.apply_rank_seed(est, 1) == 3


def test_shard_batch_splits_rows() -> None:
    x = torch.arange(10)
    assert [PM.shard_batch(x, rank=r, world_size=4)[0].tolist() for r in range(4)] == [
        [0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert PM.shard_batch(x[:3], rank=3, world_size=4)[0].tolist() == [0, 1, 2]  # fewer rows than ranks
    assert PM.shard_batch(x)[0] is x


def test_rank_and_nodes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK", "SLURM_NNODES", "WORLD_SIZE",
                "LOCAL_WORLD_SIZE", "LRBENCH_NUM_NODES"):
        monkeypatch.delenv(key, raising=False)
    assert LE.global_rank_from_env(2) == 0 and LE.num_nodes_from_env() == 1
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert LE.global_rank_from_env(4) == 5
    monkeypatch.setenv("SLURM_PROCID", "6")
    assert LE.global_rank_from_env(4) == 6
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert LE.num_nodes_from_env() == 2
    monkeypatch.setenv("SLURM_NNODES", "3")
    assert LE.num_nodes_from_env() == 3


def test_missing_grad_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainable parameter without .grad would desynchronise the buckets: a clear error before any
    collective is issued (so no rank hangs waiting)."""
    monkeypatch.setattr(D, "is_distributed", lambda: True)
    with pytest.raises(RuntimeError, match=r"parameter #1 \(shape \(3,\)\) has no .grad"):
        with_grad = nn.Parameter(torch.zeros(2))
        with_grad.grad = torch.zeros(2)
        D.all_reduce_gradients([with_grad, nn.Parameter(torch.zeros(3))])


def test_unsupported_multi_device_strategies_are_rejected() -> None:
    def config(strategy: str, devices: int, estimator: str = "ulr", **opts: object) -> dict:
        return {"strategy": strategy, "devices": devices, "estimator": estimator, "estimator_options": opts}

    PF.check_parallel(config("ddp", 2))
    PF.check_parallel(config("auto", 4))
    PF.check_parallel(config("ddp_spawn", 1))  # one device: any strategy Lightning accepts
    with pytest.raises(UserError, match=r"strategy 'ddp_spawn' is not supported with devices=2; use one of auto, ddp"):
        PF.check_parallel(config("ddp_spawn", 2))
    with pytest.raises(UserError, match="strategy 'fsdp' is not supported"):
        PF.check_parallel(config("fsdp", 8))
    PF.check_parallel(config("ddp_copies", 2, copies=16))
    PF.check_parallel(config("ddp_copies", 2, "spsa", directions=4))
    with pytest.raises(UserError, match=r"estimator_options.copies=6 must be divisible by the 4 ranks"):
        PF.check_parallel(config("ddp_copies", 4, copies=6))
    with pytest.raises(UserError, match="'bp' declares no copies option"):
        PF.check_parallel(config("ddp_copies", 2, "bp"))
    with pytest.raises(UserError, match="antithetic needs an even number of copies"):
        PF.check_parallel(config("ddp_copies", 2, copies=6, antithetic=True))
    assert PM.lightning_strategy("ddp_copies") == "ddp" and PM.lightning_strategy("auto") == "auto"


def test_cli_rejects_spawn_strategy_before_running(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from lrbench.suite.cli.main import main

    code = main(["run", "quick", "--only", "task=digits-mlp", "--only", "estimator=ulr", "--devices", "2",
                 "--strategy", "ddp_spawn", "--out", str(tmp_path / "out")])
    assert code == 2 and "strategy 'ddp_spawn' is not supported with devices=2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
