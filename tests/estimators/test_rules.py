"""Per-module rules (estimators.rules) against autograd's local VJP and the closed forms of ESTIMATORS.md."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench.estimators import EstimatorError, UnsupportedModuleError
from lrbench.estimators.modules import AddParameter, ClassToken
from lrbench.estimators.rules import (
    MODULE_RULES,
    autograd_rule,
    conv_weight_grad,
    find_rule,
    linear_rule,
    register_rule,
    rule_for,
    sum_to_parameter,
)


def autograd_vjp(module: nn.Module, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    params = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
    out = module(x)
    grads = torch.autograd.grad(out, [p for _, p in params], g)
    return dict(zip((n for n, _ in params), grads, strict=True))


def _bn(cls, c, train):
    m = cls(c)
    with torch.no_grad():
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-1, 1)
    return m.train(train)


CASES = {
    "linear-2d": (lambda: nn.Linear(5, 4), (7, 5)),
    "linear-3d-nobias": (lambda: nn.Linear(5, 4, bias=False), (3, 6, 5)),
    "conv1d-stride-dilation": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2), (3, 4, 17)),
    "conv2d-groups": (lambda: nn.Conv2d(4, 6, 3, stride=(2, 1), padding=1, groups=2), (2, 4, 9, 8)),
    "conv2d-reflect": (lambda: nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect"), (2, 3, 7, 7)),
    "conv2d-same": (lambda: nn.Conv2d(3, 5, (4, 3), padding="same", bias=False), (2, 3, 8, 6)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2, stride=1), (2, 2, 4, 4, 3)),
    "layernorm-2dims": (lambda: nn.LayerNorm((4, 5)), (3, 2, 4, 5)),
    "batchnorm1d-train": (lambda: _bn(nn.BatchNorm1d, 6, True), (9, 6)),
    "batchnorm1d-seq-eval": (lambda: _bn(nn.BatchNorm1d, 6, False), (5, 6, 4)),
    "batchnorm2d-train": (lambda: _bn(nn.BatchNorm2d, 3, True), (4, 3, 5, 5)),
    "batchnorm2d-eval": (lambda: _bn(nn.BatchNorm2d, 3, False), (4, 3, 5, 5)),
    "batchnorm3d-train": (lambda: _bn(nn.BatchNorm3d, 2, True), (3, 2, 3, 4, 2)),
    "groupnorm": (lambda: nn.GroupNorm(2, 4), (3, 4, 5)),
    "prelu-shared": (lambda: nn.PReLU(init=0.3), (4, 3, 5)),
    "prelu-per-channel": (lambda: nn.PReLU(3, init=0.2), (4, 3, 2, 2)),
    "add-parameter": (lambda: AddParameter(6, 4), (3, 6, 4)),
    "class-token": (lambda: ClassToken(4), (3, 5, 4)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_equals_autograd_local_vjp(case: str) -> None:
    torch.manual_seed(1)
    make, shape = CASES[case]
    module = make().double()
    x = torch.randn(shape, dtype=torch.float64)
    g = torch.randn_like(module(x))
    expected = autograd_vjp(module, x, g)
    with torch.no_grad():
        got = find_rule(module)(module, x, g)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-10)


#: Module types whose reference case lives in a dedicated test below rather than in CASES.
DEDICATED_CASES = {nn.Embedding: "test_embedding_rule_with_padding_idx / test_embedding_rule_scale_grad_by_freq"}


def test_every_registered_rule_has_a_reference_case() -> None:
    """A rule registered without a rule-vs-autograd case here fails this test."""
    covered = {type(make()) for make, _ in CASES.values()} | set(DEDICATED_CASES)
    missing = sorted(t.__name__ for t in MODULE_RULES if t not in covered)
    assert not missing, f"add a case to CASES for: {', '.join(missing)}"


def test_a_second_rule_for_a_type_is_an_error_unless_replace() -> None:
    try:
        with pytest.raises(EstimatorError, match="Linear already has an LR rule.*replace=True"):
            register_rule(nn.Linear)(lambda module, input, grad_output: {})
        assert MODULE_RULES[nn.Linear] is linear_rule
        replacement = register_rule(nn.Linear, replace=True)(lambda module, input, grad_output: {})
        assert MODULE_RULES[nn.Linear] is replacement
    finally:
        register_rule(nn.Linear, replace=True)(linear_rule)
    assert MODULE_RULES[nn.Linear] is linear_rule


def test_embedding_rule_scale_grad_by_freq() -> None:
    torch.manual_seed(5)
    module = nn.Embedding(6, 3, scale_grad_by_freq=True).double()
    idx = torch.randint(0, 6, (4, 5))
    g = torch.randn(4, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(find_rule(module)(module, idx, g)["weight"], autograd_vjp(module, idx, g)["weight"])


def test_embedding_rule_with_padding_idx() -> None:
    torch.manual_seed(2)
    module = nn.Embedding(10, 3, padding_idx=0).double()
    idx = torch.randint(0, 10, (6, 7))
    g = torch.randn(6, 7, 3, dtype=torch.float64)
    expected = autograd_vjp(module, idx, g)["weight"]
    got = find_rule(module)(module, idx, g)["weight"]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert got[0].abs().max() == 0


def test_closed_forms_of_estimators_md() -> None:
    """Linear: ĝ_W = gᵀX, ĝ_b = Σg; affine: ĝ_γ = Σ g⊙x̂; additive parameter: Σ over broadcast dims."""
    torch.manual_seed(3)
    x, g = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    lin = nn.Linear(5, 4).double()
    grads = find_rule(lin)(lin, x, g)
    torch.testing.assert_close(grads["weight"], g.t() @ x)
    torch.testing.assert_close(grads["bias"], g.sum(0))
    ln = nn.LayerNorm(5).double()
    x_hat = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + ln.eps)
    grads = find_rule(ln)(ln, x, g[:, :1].expand(8, 5))
    torch.testing.assert_close(grads["weight"], (g[:, :1] * x_hat).sum(0))
    t = torch.randn(2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(sum_to_parameter(t, (3, 1), (3, 1)), t.sum((0, 2)).view(3, 1))


def test_conv_weight_grad_is_the_unfolded_correlation() -> None:
    """ĝ_W[o, c, k] = Σ_n Σ_pos g[n, o, pos]·x[n, c, pos + k]  (via unfold), shared by 1-d and 2-d."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    g = torch.randn(2, 4, 5, 4, dtype=torch.float64)
    cols = torch.nn.functional.unfold(x, (2, 2))            # (n, c·kh·kw, positions)
    expected = torch.einsum("nop,nkp->ok", g.reshape(2, 4, -1), cols).reshape(w.shape)
    torch.testing.assert_close(conv_weight_grad(x, w, g, (1, 1), (0, 0), (1, 1), 1), expected)


def test_subclass_keeping_forward_inherits_the_rule_but_not_one_that_overrides_it() -> None:
    class Tagged(nn.Linear):
        pass

    class Scaled(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    assert find_rule(Tagged(2, 2)) is MODULE_RULES[nn.Linear]
    assert find_rule(Scaled(2, 2)) is None
    assert find_rule(nn.modules.linear.NonDynamicallyQuantizableLinear(2, 2)) is MODULE_RULES[nn.Linear]


def test_unsupported_module_error_names_path_type_parameter_and_choices() -> None:
    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale.tanh()

    model = nn.Sequential(nn.Linear(3, 3), Gate())
    with pytest.raises(UnsupportedModuleError) as info:
        rule_for(model, "1", model[1], "error")
    message = str(info.value)
    assert "'1'" in message and "Gate" in message and "'scale'" in message and "Linear" in message
    assert "\n" not in message
    assert rule_for(model, "1", model[1], "autograd") is autograd_rule
    x, g = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(autograd_rule(model[1], x, g)["scale"], (g * x).sum(0) * (1 - model[1].scale.tanh() ** 2))
