"""Attacks and the robustness protocol (suite.training.robustness_eval) on tiny models trained on sklearn digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench.suite.errors import UserError
from lrbench.suite.training.robustness_eval import fgsm, pgd, robustness_metrics
from lrbench.suite.training.robustness_eval.evaluate import resolve_settings, select_subset

EPS_LINF = [0.0, 0.05, 0.1, 0.2, 0.3]
EPS_L2 = [0.0, 0.25, 0.5, 1.0, 1.5]
FAST = {"eps_linf": EPS_LINF, "eps_l2": EPS_L2, "corruptions": [], "subset_size": 300,
        "pgd_linf": {"steps": 10}, "pgd_l2": {"steps": 10}}


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 25, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 100):
            idx = perm[i:i + 100]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


class _RowRNN(nn.Module):
    """A GRU reading the 8×8 digit one row (8 pixels) per time step."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 32, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(x.reshape(len(x), 8, 8))
        return self.head(h[-1])


@pytest.fixture(scope="module")
def digits():
    return _digits()


@pytest.fixture(scope="module")
def trained(digits):
    xtr, ytr, _, _ = digits
    return _train(_mlp(0), xtr, ytr)


@pytest.fixture(scope="module")
def surrogate(digits):
    xtr, ytr, _, _ = digits
    return _train(_mlp(1), xtr, ytr, seed=1)


@pytest.fixture(scope="module")
def metrics(trained, surrogate, digits):
    _, _, xte, yte = digits
    return robustness_metrics(trained, xte, yte, dataset="digits", settings=FAST, surrogate=surrogate, seed=0)


def test_trained_model_is_accurate(metrics):
    assert metrics["clean"] > 0.9
    assert metrics["subset_size"] == 300 and metrics["subset_seed"] == 0


def test_eps_zero_is_exactly_clean(metrics, trained, digits):
    _, _, xte, yte = digits
    for key in ("fgsm", "pgd_linf", "transfer_fgsm", "transfer_pgd"):
        assert metrics[key]["0.0"] == metrics["clean"], key
    assert metrics["pgd_l2"]["0.0"] == metrics["clean"]
    for norm in ("linf", "l2"):
        assert torch.equal(pgd(trained, xte[:50], yte[:50], eps=0.0, norm=norm), xte[:50])
    assert torch.equal(fgsm(trained, xte[:50], yte[:50], eps=0.0), xte[:50])


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_adversarial_inputs_stay_in_box_and_ball(trained, digits, norm, random_start):
    _, _, xte, yte = digits
    x, y = xte[:128], yte[:128]
    for eps in ((0.05, 0.3) if norm == "linf" else (0.5, 3.0)):
        g = torch.Generator().manual_seed(0)
        adv = pgd(trained, x, y, eps=eps, norm=norm, steps=7, random_start=random_start, generator=g)
        assert adv.min() >= 0 and adv.max() <= 1
        delta = (adv - x).flatten(1)
        size = delta.abs().max(dim=1).values if norm == "linf" else delta.norm(dim=1)
        assert (size <= eps * (1 + 1e-6) + 1e-7).all()
        assert size.max() > 0.5 * eps  # the attack actually moves
    adv = fgsm(trained, x, y, eps=0.1)
    assert adv.min() >= 0 and adv.max() <= 1 and (adv - x).abs().max() <= 0.1 + 1e-7


def test_pgd_at_most_fgsm_and_attacks_hurt(metrics):
    for eps in EPS_LINF[1:]:
        key = repr(eps)
        assert metrics["pgd_linf"][key] <= metrics["fgsm"][key]
    assert metrics["pgd_linf"]["0.1"] < metrics["clean"] - 0.2
    assert metrics["pgd_linf"]["0.3"] < 0.05


@pytest.mark.parametrize("attack", ["fgsm", "pgd_linf", "pgd_l2", "transfer_fgsm", "transfer_pgd"])
def test_accuracy_non_increasing_in_eps(metrics, attack):
    values = list(metrics[attack].values())
    assert values[0] == metrics["clean"]
    assert all(b <= a for a, b in zip(values, values[1:], strict=False)), values
    assert values[-1] < values[0]


def test_transfer_weaker_than_white_box(metrics):
    """Examples crafted on another network fool this one less than its own gradients do."""
    for eps in ("0.1", "0.2"):
        assert metrics["transfer_pgd"][eps] >= metrics["pgd_linf"][eps]


def _linear_two_class(seed: int = 0) -> tuple[nn.Linear, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Linear(20, 2)
    w_diff = (model.weight[1] - model.weight[0]).detach()
    return model, w_diff


def test_fgsm_on_linear_model_is_eps_sign_w():
    """Hand-checked: for f(x) = Wx + b with 2 classes, ∇ₓCE = (p₁ − [y=1])·(w₁ − w₀), so FGSM moves every
    coordinate by ε·sign(w₁ − w₀) for y = 0 and by −ε·sign(w₁ − w₀) for y = 1 (then clips to [0,1])."""
    model, w_diff = _linear_two_class()
    x = torch.rand(6, 20, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2   # interior: no clipping
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    eps = 0.1
    direction = torch.where(y[:, None] == 0, 1.0, -1.0) * w_diff.sign()
    adv = fgsm(model, x, y, eps=eps)
    assert torch.equal(adv, (x + eps * direction).clamp(0, 1))
    assert torch.allclose(adv - x, eps * direction, atol=1e-6)
    # at the box edge the step is clipped: start from 0 and 1
    edge = torch.stack([torch.zeros(20), torch.ones(20)])
    adv = fgsm(model, edge, torch.tensor([0, 0]), eps=eps)
    assert torch.equal(adv[0], (eps * w_diff.sign()).clamp(min=0))
    assert torch.equal(adv[1], (1 + eps * w_diff.sign()).clamp(max=1))


def test_pgd_on_linear_model_hits_the_ball_corner_and_sphere():
    """Hand-checked: the input gradient of a 2-class linear model has a fixed direction ±(w₁ − w₀), so PGD-L∞
    ends at x + ε·sign(·) and PGD-L2 at x + ε·(·)/‖·‖₂ once the steps add up to ≥ ε."""
    model, w_diff = _linear_two_class(3)
    x = torch.full((4, 20), 0.5)
    y = torch.tensor([0, 0, 1, 1])
    sign = torch.where(y[:, None] == 0, 1.0, -1.0)
    eps = 0.2
    adv = pgd(model, x, y, eps=eps, norm="linf", steps=5, random_start=False)
    assert torch.allclose(adv - x, eps * sign * w_diff.sign(), atol=1e-6)
    adv = pgd(model, x, y, eps=1.0, norm="l2", steps=5, random_start=False)
    assert torch.allclose(adv - x, sign * w_diff / w_diff.norm(), atol=1e-6)


def test_matches_torchattacks_reference(trained, digits):
    """Oracle: torchattacks (installed with --no-deps) on a seeded batch, deterministic settings."""
    torchattacks = pytest.importorskip("torchattacks")
    _, _, xte, yte = digits
    x = xte[:64].reshape(64, 1, 8, 8)  # torchattacks' L2 code wants 4-D images
    y = yte[:64]
    eps, steps = 0.1, 7
    alpha = 2.5 * eps / steps
    ours = fgsm(trained, x, y, eps=eps)
    ref = torchattacks.FGSM(trained, eps=eps)(x, y)
    assert torch.allclose(ours, ref, atol=1e-6)
    ours = pgd(trained, x, y, eps=eps, norm="linf", steps=steps, random_start=False)
    ref = torchattacks.PGD(trained, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    assert torch.allclose(ours, ref, atol=1e-6)
    eps = 1.0
    ours = pgd(trained, x, y, eps=eps, norm="l2", steps=steps, random_start=False)
    attack = torchattacks.PGDL2(trained, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=False)
    # torchattacks divides by ‖g‖ + 1e-10 with a batch-mean loss; on confidently classified examples ‖g‖ is
    # ~1e-7, where that constant alone moves the step by 1e-4. Make it negligible for an exact comparison.
    attack.eps_for_division = 1e-30
    ref = attack(x, y)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_rnn_is_attacked_under_inference_mode(digits):
    """Gradients flow through the unrolled GRU even when the caller is in inference mode."""
    xtr, ytr, xte, yte = digits
    model = _train(_RowRNN(), xtr, ytr, epochs=10)
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.inference_mode():
        result = robustness_metrics(model, xte, yte, dataset="digits", seed=0,
                                    settings={**FAST, "eps_linf": [0.0, 0.1, 0.3], "eps_l2": [1.0]})
    assert model.training  # flags restored
    assert all(p.grad is None for p in model.parameters())
    assert result["clean"] > 0.8
    assert result["pgd_linf"]["0.0"] == result["clean"]
    assert result["pgd_linf"]["0.3"] < result["pgd_linf"]["0.1"] < result["clean"] - 0.1
    assert result["transfer_fgsm"] is None and result["transfer_pgd"] is None


def test_transfer_from_the_model_itself_is_white_box(trained, digits):
    _, _, xte, yte = digits
    settings = {**FAST, "eps_linf": [0.1, 0.2], "eps_l2": []}
    result = robustness_metrics(trained, xte, yte, dataset="digits", settings=settings, surrogate=trained,
                                seed=4)
    assert result["transfer_fgsm"] == result["fgsm"] and result["transfer_pgd"] == result["pgd_linf"]
    assert result["settings"]["transfer_source"] == "surrogate"


def test_eval_mode_and_dropout(digits):
    """A model left in training mode is evaluated in eval mode (dropout off): two calls agree exactly."""
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))
    _train(model, xtr, ytr, epochs=5).train()
    settings = {**FAST, "eps_linf": [0.1], "eps_l2": [0.5], "corruptions": ["contrast"]}
    a = robustness_metrics(model, xte, yte, dataset="digits", settings=settings)
    b = robustness_metrics(model, xte, yte, dataset="digits", settings=settings)
    assert a == b and model.training
    sub_x, sub_y = select_subset(xte, yte, 300, 0)
    model.eval()
    with torch.no_grad():
        assert a["clean"] == (model(sub_x).argmax(1) == sub_y).sum().item() / 300


class _NoisyInput(nn.Module):
    """Keeps Gaussian input noise at test time (the case that needs expectation over transformation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * torch.randn_like(x)


def test_eot_averages_gradient_over_test_time_noise(trained, digits):
    from lrbench.suite.training.robustness_eval.attacks import input_gradient

    _, _, xte, yte = digits
    x, y = xte[:64], yte[:64]
    noisy = nn.Sequential(_NoisyInput(), trained)
    with torch.enable_grad():
        reference = input_gradient(noisy, x, y, eot_samples=2000).flatten()
        one = input_gradient(noisy, x, y, eot_samples=1).flatten()
        many = input_gradient(noisy, x, y, eot_samples=64).flatten()
    cos = nn.functional.cosine_similarity
    assert cos(many, reference, dim=0) > cos(one, reference, dim=0) + 0.2
    adv = pgd(noisy, x, y, eps=0.1, steps=3, eot_samples=4)
    assert (adv - x).abs().max() <= 0.1 + 1e-7


def test_subset_is_seeded_and_reported(digits):
    _, _, xte, yte = digits
    a, _ = select_subset(xte, yte, 100, 3)
    b, _ = select_subset(xte, yte, 100, 3)
    c, _ = select_subset(xte, yte, 100, 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert select_subset(xte, yte, None, 0)[0] is xte


def test_default_grids_and_settings():
    cfg = resolve_settings("cifar10", None, seed=5)
    assert cfg["eps_linf"] == [2 / 255, 4 / 255, 8 / 255, 16 / 255]
    assert 0.5 in cfg["eps_l2"] and cfg["subset_seed"] == 0 and cfg["subset_size"] == 1000
    assert resolve_settings("mnist", {"subset_seed": None}, 5)["subset_seed"] == 5
    assert resolve_settings("fashion-mnist", None, 0)["eps_linf"] == [0.05, 0.1, 0.13, 0.2, 0.3]
    assert resolve_settings("mnist", {"pgd_linf": {"steps": 40}}, 0)["pgd_linf"] == \
        {"steps": 40, "step_size_factor": 2.5, "random_start": True}
    assert resolve_settings("mnist", {"pgd_l2.steps": 7, "pgd_l2": {"random_start": False}}, 0)["pgd_l2"] == \
        {"steps": 7, "step_size_factor": 2.5, "random_start": False}
    with pytest.raises(UserError, match="valid"):
        resolve_settings("mnist", {"epsilon": [0.1]}, 0)
    with pytest.raises(UserError, match="valid"):
        resolve_settings("mnist", {"pgd_linf.step": 3}, 0)
    with pytest.raises(UserError, match="eps_linf"):
        resolve_settings("imagenet", {"corruptions": []}, 0)
    with pytest.raises(UserError, match="valid"):
        resolve_settings("mnist", {"corruptions": ["fog"]}, 0)
    with pytest.raises(UserError):
        resolve_settings("mnist", {"eps_linf": [-0.1]}, 0)


def test_corruption_accuracy_drops_with_severity(trained, digits):
    _, _, xte, yte = digits
    result = robustness_metrics(trained, xte, yte, dataset="digits", seed=0,
                                settings={"eps_linf": [], "eps_l2": [], "subset_size": 300})
    assert result["fgsm"] == {} and result["pgd_l2"] == {}
    assert set(result["corruptions"]) == {"gaussian_noise", "impulse_noise", "contrast", "gaussian_blur"}
    for name, by_severity in result["corruptions"].items():
        values = [result["clean"]] + [by_severity[str(s)] for s in range(1, 6)]
        assert all(b <= a + 0.01 for a, b in zip(values, values[1:], strict=False)), (name, values)
        assert values[-1] < values[0] - 0.05, (name, values)


@pytest.mark.parametrize("task", ["digits-rnn", "digits-rnn-lstm", "digits-rnn-elman", "digits-cnn-batchnorm",
                                  "digits-vit"])
def test_task_models_are_attackable_in_eval_mode(task):
    """Every model family of tasks/ gives input gradients under inference mode; BatchNorm statistics are
    not touched (eval mode) and the train flag comes back."""
    from lrbench.tasks import get_task

    spec = get_task(task)
    torch.manual_seed(0)
    model = spec.build_model().train()
    x, y = spec.load_data().test
    x, y = x[:32], y[:32]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        adv = pgd(model, x, y, eps=0.1, steps=2)
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    delta = (adv - x).abs()
    assert delta.max() > 0.05 and delta.max() <= 0.1 + 1e-7 and adv.min() >= 0 and adv.max() <= 1


def test_rejects_inputs_that_are_not_images_in_the_unit_box(trained):
    x = torch.rand(10, 64)
    y = torch.zeros(10, dtype=torch.long)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        robustness_metrics(trained, x * 2 - 0.5, y, dataset="digits")
    with pytest.raises(UserError, match="token"):
        robustness_metrics(trained, torch.zeros(10, 64, dtype=torch.long), y, dataset="digits")
    with pytest.raises(UserError, match="token"):
        robustness_metrics(trained, x, torch.zeros(10, 5, dtype=torch.long), dataset="digits")


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_random_start_pgd_agrees_with_torchattacks_in_accuracy(trained, digits, norm, eps):
    """With random starts the draws differ, so compare robust accuracies on the whole digits test set."""
    torchattacks = pytest.importorskip("torchattacks")
    _, _, xte, yte = digits
    x = xte.reshape(-1, 1, 8, 8)
    steps = 10
    alpha = 2.5 * eps / steps
    torch.manual_seed(0)
    ours = pgd(trained, x, yte, eps=eps, norm=norm, steps=steps, generator=torch.Generator().manual_seed(0))
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    ref = cls(trained, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, yte)
    with torch.no_grad():
        acc_ours = (trained(ours).argmax(1) == yte).float().mean().item()
        acc_ref = (trained(ref).argmax(1) == yte).float().mean().item()
    assert abs(acc_ours - acc_ref) <= 0.03, (acc_ours, acc_ref)
