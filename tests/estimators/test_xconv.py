"""XConv against the autograd reference: exactness, unbiasedness, variance ∝ 1/r, stored bytes measured."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from lrbench.estimators import EstimatorError, get_estimator
from lrbench.estimators.xconv import SketchPlan, sketched_layers

MODES = ("gaussian", "independent", "orthogonal")


def per_sample_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def small_cnn(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(),
        nn.Conv2d(4, 3, 3, stride=2, padding=1, padding_mode="reflect"), nn.Tanh(),
        nn.Conv2d(3, 3, 2, padding="same"), nn.Flatten(), nn.Linear(3 * 4 * 4, 3),
    ).to(dtype)


def batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(5, 2, 8, 8, generator=gen, dtype=dtype), torch.randint(0, 3, (5,), generator=gen)


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def reference(model_fn, inputs, targets) -> dict[str, torch.Tensor]:
    model = model_fn()
    get_estimator("bp").estimate(model, per_sample_ce, inputs, targets)
    return grads(model)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_exact_when_orthogonal_probes_span_the_input() -> None:
    """r ≥ c·N with orthogonal probes: Z Zᵀ = I per channel, every weight gradient equals autograd."""
    x, y = batch()
    ref = reference(small_cnn, x, y)
    # largest conv input: layer 2 sees the reflect-padded 4×10×10 input = 400 numbers per sample
    model = small_cnn()
    est = get_estimator("xconv", probes=400, probe_mode="orthogonal", layers="all", first_layer_exact=False)
    est.estimate(model, per_sample_ce, x, y)
    for name, g in grads(model).items():
        assert rel(g, ref[name]) < 1e-12, name
    assert [r.exact for r in est.last_records] == [False] * 4


def test_input_and_bias_gradients_exact_and_first_layer_exact() -> None:
    """Only sketched weights are estimated: biases, input gradient and the exact first layer match BP."""
    x, y = batch()
    x_ref = x.clone().requires_grad_(True)
    ref_model = small_cnn()
    get_estimator("bp").estimate(ref_model, per_sample_ce, x_ref, y)
    ref = grads(ref_model)
    x_est = x.clone().requires_grad_(True)
    model = small_cnn()
    get_estimator("xconv", probes=2, probe_mode="gaussian", first_layer_exact=True).estimate(
        model, per_sample_ce, x_est, y)
    got = grads(model)
    assert rel(x_est.grad, x_ref.grad) < 1e-12          # input gradient through sketched layers
    for name in ("0.bias", "2.bias", "4.bias", "6.weight", "6.bias", "0.weight"):
        assert rel(got[name], ref[name]) < 1e-12, name  # exact: biases, Linear, the exact first conv
    for name in ("2.weight", "4.weight"):
        assert rel(got[name], ref[name]) > 0.05, name   # sketched with r=2: visibly estimated


def linear_probe_model(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1)).to(dtype)


def monte_carlo_conv_grad(mode: str, probes: int, trials: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over ``trials`` seeds of the sketched weight gradient of L = Σ⟨conv(x), G⟩ / B, and the truth."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, 6, 6, generator=gen, dtype=torch.float64)
    direction = torch.randn(4, 5, 6, 6, generator=gen, dtype=torch.float64)

    def linear_loss(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return (out * direction).flatten(1).sum(1)

    model = linear_probe_model()
    get_estimator("bp").estimate(model, linear_loss, x, x)
    truth = model[0].weight.grad.clone()
    total = torch.zeros_like(truth)
    est = get_estimator("xconv", probes=probes, probe_mode=mode, first_layer_exact=False, seed=11)
    for _ in range(trials):
        est.estimate(model, linear_loss, x, x)  # the step counter advances: fresh probes every call
        total += model[0].weight.grad
    return total / trials, truth


@pytest.mark.parametrize("mode", MODES)
def test_unbiased_and_error_falls_as_one_over_sqrt_r(mode: str) -> None:
    """MC mean of δW over 300 probe draws → autograd; error ratio r=4 vs r=64 ≈ 4 (≥ 2.5)."""
    mean4, truth = monte_carlo_conv_grad(mode, 4, 300)
    mean64, _ = monte_carlo_conv_grad(mode, 64, 300)
    err4, err64 = rel(mean4, truth), rel(mean64, truth)
    assert err64 < 0.1, (mode, err64)
    assert err4 / err64 >= 2.5, (mode, err4, err64)


@pytest.mark.parametrize("mode", ("gaussian", "orthogonal"))
def test_linear_layers_sketched_along_rows_unbiased(mode: str) -> None:
    """layers=all: a Linear stores ZᵀX (r×d); MC mean → δYᵀX, error ratio r=4 vs r=64 ≥ 2.5; r ≥ M exact."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(128, 6, generator=gen, dtype=torch.float64)
    direction = torch.randn(128, 4, generator=gen, dtype=torch.float64)

    def linear_loss(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return (out * direction).sum(1)

    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(6, 4)).double()
    get_estimator("bp").estimate(model, linear_loss, x, x)
    truth = model[0].weight.grad.clone()
    errors = {}
    for probes in (4, 64, 128):
        est = get_estimator("xconv", probes=probes, probe_mode=mode, layers="all", first_layer_exact=False)
        total = torch.zeros_like(truth)
        for _ in range(300):
            _, logs = est.estimate(model, linear_loss, x, x)
            total += model[0].weight.grad
        errors[probes] = rel(total / 300, truth)
        assert logs["stored_bytes/0"] == probes * 6 * 8 + 8     # r×d float64 + seed, vs 128×6 exact
    assert errors[64] < 0.1 and errors[4] / errors[64] >= 2.5, errors
    if mode == "orthogonal":
        assert errors[128] < 1e-12                              # r = M: Z Zᵀ = I


def saved_activation_bytes(model: nn.Module, plan: SketchPlan | None, x: torch.Tensor) -> tuple[int, int]:
    """Bytes autograd saved for backward in one forward of ``model`` (parameters excluded), and the
    estimator's own record of them. Measured with saved_tensors_hooks: nothing is taken on trust."""
    params = {p.data_ptr() for p in model.parameters()}
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            saved.append(t.nbytes)
        return t

    if plan is None:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return sum(saved), 0
    with sketched_layers(model, plan) as records, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(saved), records[0].stored_bytes


@pytest.mark.parametrize(("mode", "probes", "numbers"), [
    ("gaussian", 8, lambda b, c, n, r: r * b),
    ("independent", 8, lambda b, c, n, r: c * r * b),
    ("orthogonal", 40, lambda b, c, n, r: r * b),            # 40 columns over 16 channels: 3,3,...,2
    ("orthogonal", 16 * 100, lambda b, c, n, r: c * n * b),   # r ≥ c·N: as much as exact (and exact)
])
def test_stored_bytes_measured_equal_formula(mode: str, probes: int, numbers) -> None:
    b, c, side = 8, 16, 10
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1))
    x = torch.randn(b, c, side, side)
    exact_bytes, _ = saved_activation_bytes(model, None, x)
    assert exact_bytes == c * side * side * b * 4                      # BP saves X: c·N·B float32
    plan = SketchPlan(probes, mode, "rademacher", "conv", False, seed=0, step=0)
    measured, recorded = saved_activation_bytes(model, plan, x)
    assert measured == numbers(b, c, side * side, probes) * 4          # the sketch, nothing else
    assert recorded == measured + 8                                    # + the 8-byte probe seed


def test_paper_mnist_net_bytes_per_layer() -> None:
    """The paper's MNIST net, r=16, gaussian: per-layer logs are r·B·4 + 8 bytes, first layer stores X."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(288, 10))
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    _, logs = get_estimator("xconv", probes=16).estimate(model, per_sample_ce, x, y)
    assert logs["stored_bytes/0"] == 1 * 28 * 28 * 32 * 4          # first layer exact
    assert logs["stored_bytes/3"] == 16 * 32 * 4 + 8               # vs 16·14·14·32·4 = 401,408 exact
    assert logs["stored_bytes/6"] == 16 * 32 * 4 + 8               # vs 32·7·7·32·4 = 200,704 exact
    assert logs["exact_bytes"] == (28 * 28 + 16 * 14 * 14 + 32 * 7 * 7) * 32 * 4
    assert logs["forward_passes"] == 1.0


class TwiceConv(nn.Module):
    """One conv applied twice (shared weights) and a Linear over a (B, T, d) sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(torch.tanh(self.conv(x))))      # (B, 3, 4, 4)
        return self.head(h.flatten(2).transpose(1, 2).reshape(x.shape[0], 8, 6)).mean(1)


def test_shared_layer_calls_and_sequence_linear() -> None:
    """A layer called twice gets one sketch (and seed) per call; exact probes → exact sum of both calls."""
    def build() -> nn.Module:
        torch.manual_seed(0)
        return TwiceConv().double()

    torch.manual_seed(8)
    x, y = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randint(0, 3, (4,))
    ref = reference(build, x, y)
    model = build()
    est = get_estimator("xconv", probes=48, probe_mode="orthogonal", layers="all", first_layer_exact=False)
    _, logs = est.estimate(model, per_sample_ce, x, y)
    conv, head = est.last_records
    assert conv.calls == 2 and logs["stored_bytes/conv"] == 2 * (48 * 4 * 8 + 8)
    assert head.input_shapes == [(4, 8, 6)] and logs["stored_bytes/head"] == 32 * 6 * 8 + 8  # r capped at M=32
    got = grads(model)
    for name in ref:
        assert rel(got[name], ref[name]) < 1e-12, name
    est = get_estimator("xconv", probes=4, layers="all", first_layer_exact=False)
    est.estimate(model, per_sample_ce, x, y)
    assert rel(grads(model)["conv.weight"], ref["conv.weight"]) > 0.01   # sketched in both calls


def test_seeded_bit_identical_and_grad_replaced() -> None:
    x, y = batch(torch.float32)
    runs = []
    for seed in (5, 5, 6):
        model = small_cnn(torch.float32)
        est = get_estimator("xconv", probes=4, probe_mode="independent", layers="all", seed=seed)
        est.estimate(model, per_sample_ce, x, y)
        est.step = 0
        est.estimate(model, per_sample_ce, x, y)  # same step again: replaces, does not accumulate
        runs.append(grads(model))
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert not torch.equal(runs[0]["2.weight"], runs[2]["2.weight"])
    once = small_cnn(torch.float32)
    get_estimator("xconv", probes=4, probe_mode="independent", layers="all", seed=5).estimate(
        once, per_sample_ce, x, y)
    assert torch.equal(grads(once)["2.weight"], runs[0]["2.weight"])


def test_forward_restored_after_success_and_error() -> None:
    x, y = batch()
    model = small_cnn()
    est = get_estimator("xconv", probes=2)

    def broken(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        est.estimate(model, broken, x, y)
    assert all("forward" not in m.__dict__ for m in model.modules())
    est.estimate(model, per_sample_ce, x, y)
    assert all("forward" not in m.__dict__ for m in model.modules())
    with pytest.raises(EstimatorError, match="probes >= input channels"):
        get_estimator("xconv", probes=2, probe_mode="orthogonal", first_layer_exact=False).estimate(
            model, per_sample_ce, x, y)   # conv 2 has 4 input channels
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("opts", [{"probes": 0}, {"probe_mode": "fourier"}, {"layers": "dense"},
                                  {"probe_dist": "uniform"}, {"first_layer_exact": "maybe"}, {"rank": 3}])
def test_bad_options_one_line_error(opts: dict) -> None:
    with pytest.raises(EstimatorError) as info:
        get_estimator("xconv", **opts)
    assert "\n" not in str(info.value)


def test_trains_digits_cnn_as_well_as_bp() -> None:
    """10 epochs of Adam 3e-3 on digits-cnn (first conv exact, the second sketched with r=16): test
    accuracy within 3 points of BP (measured: BP 0.972, gaussian 0.972, independent 0.975)."""
    from lrbench.tasks import get_task

    spec = get_task("digits-cnn")
    data = spec.load_data()
    (x_train, y_train), (x_test, y_test) = data.train, data.test

    def train(name: str, **opts) -> float:
        torch.manual_seed(0)
        model = spec.build_model()
        optimizer = torch.optim.Adam(model.parameters(), 3e-3)
        est = get_estimator(name, **opts)
        order = torch.Generator().manual_seed(0)
        for _ in range(10):
            perm = torch.randperm(len(x_train), generator=order)
            for i in range(0, len(x_train), 64):
                idx = perm[i:i + 64]
                est.estimate(model, spec.loss_fn, x_train[idx], y_train[idx])
                optimizer.step()
        model.eval()
        with torch.no_grad():
            return float((model(x_test).argmax(1) == y_test).double().mean())

    bp = train("bp")
    for mode in ("gaussian", "independent"):
        acc = train("xconv", probes=16, probe_mode=mode)
        assert acc >= 0.93 and acc >= bp - 0.03, (mode, acc, bp)


def test_bit_packing_round_trip() -> None:
    from lrbench.estimators.masked_relu import pack_bits, unpack_bits

    mask = torch.rand(3, 5, 7) > 0.5                       # 105 elements: not a multiple of 8
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == 14
    assert torch.equal(unpack_bits(packed, mask.shape), mask)


def relu_net(inplace: bool) -> nn.Sequential:
    torch.manual_seed(9)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 3)).double()


@pytest.mark.parametrize("inplace", (False, True))
def test_relu_mask_exact_and_one_bit_per_element(inplace: bool) -> None:
    """relu_mask: gradients unchanged (exact probes → BP to 1e-12); each ReLU saves ⌈n/8⌉ bytes."""
    x, y = torch.randn(6, 3, 5, 5, dtype=torch.float64), torch.randint(0, 3, (6,))
    ref = reference(lambda: relu_net(inplace), x, y)
    model = relu_net(inplace)
    est = get_estimator("xconv", probes=4 * 25, probe_mode="orthogonal", first_layer_exact=False)
    _, logs = est.estimate(model, per_sample_ce, x, y)
    for name, g in grads(model).items():
        assert rel(g, ref[name]) < 1e-12, name
    assert logs["relu_mask_bytes"] == 2 * 75                          # 600 elements -> 75 bytes each
    assert logs["relu_exact_bytes"] == 2 * 6 * 4 * 25 * 8


def test_relu_mask_frees_the_conv_input_measured() -> None:
    """conv → ReLU → conv: BP keeps X₁ and the ReLU output (= X₂); XConv+relu_mask keeps only the two
    sketches and the mask (distinct storages that autograd saved, parameters excluded)."""
    b, c, side, r = 8, 16, 12, 16
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
    x = torch.randn(b, c, side, side)
    params = {p.data_ptr() for p in model.parameters()}

    def saved_storage_bytes(plan: SketchPlan | None) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.data_ptr() not in params:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with contextlib.ExitStack() as stack:
            if plan is not None:
                stack.enter_context(sketched_layers(model, plan))
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
            model(x)
        return sum(seen.values())

    numel = b * c * side * side
    assert saved_storage_bytes(None) == 2 * numel * 4                             # X₁ and ReLU(·) = X₂
    plain = SketchPlan(r, "gaussian", "rademacher", "conv", False, seed=0, step=0, relu_mask=False)
    assert saved_storage_bytes(plain) == 2 * r * b * 4 + numel * 4                 # ReLU still holds X₂
    lean = SketchPlan(r, "gaussian", "rademacher", "conv", False, seed=0, step=0, relu_mask=True)
    assert saved_storage_bytes(lean) == 2 * r * b * 4 + numel // 8                 # sketches + 1-bit mask


@pytest.mark.parametrize("layout", ("gaussian", "independent", "orthogonal", "rows"))
def test_sketch_round_trip_unbiased(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """E[expand(compress(x))] = x for every layout (Z regenerated from the seed in both calls); the
    gaussian layout is drawn in row blocks (block size forced small here)."""
    from lrbench.estimators.sketch import JointSketch, RowSketch, conv_sketch

    monkeypatch.setattr(JointSketch, "CHUNK", 40)      # 40 // 8 = 5 rows of Z per block
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    total = torch.zeros_like(x)
    for seed in range(2000):
        sketch = RowSketch(8, "rademacher", seed, orthonormal=False) if layout == "rows" else \
            conv_sketch(layout, 8, "rademacher", seed)
        data = x.reshape(3, -1) if layout == "rows" else x
        stored = sketch.compress(data)
        assert stored.numel() == sketch.stored_numbers(tuple(data.shape))
        total += sketch.expand(stored).reshape(x.shape)
    assert rel(total / 2000, x) < 0.1


@pytest.mark.parametrize("conv", [
    dict(kernel_size=3, groups=2, bias=False),                 # grouped, no bias
    dict(kernel_size=3, groups=4, dilation=2, padding=2),      # depthwise, dilated
    dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0)),   # anisotropic
    dict(kernel_size=3, padding=1, padding_mode="circular"),
])
def test_conv_geometries_exact_with_spanning_probes(conv: dict) -> None:
    """Grouped/depthwise/dilated/strided/circular convs: δW from a spanning sketch equals autograd."""
    def build() -> nn.Sequential:
        torch.manual_seed(10)
        return nn.Sequential(nn.Conv2d(4, 4, **conv), nn.Tanh(), nn.Flatten(), nn.LazyLinear(3)).double()

    x, y = torch.randn(3, 4, 6, 6, dtype=torch.float64), torch.randint(0, 3, (3,))
    build()(x)   # materialise the lazy head once so both copies agree
    ref_model = build()
    ref_model(x)
    get_estimator("bp").estimate(ref_model, per_sample_ce, x, y)
    model = build()
    model(x)
    est = get_estimator("xconv", probes=4 * 100, probe_mode="orthogonal", first_layer_exact=False)
    est.estimate(model, per_sample_ce, x, y)
    assert est.last_records[0].calls == 1 and not est.last_records[0].exact
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert rel(p.grad, q.grad) < 1e-12, name
