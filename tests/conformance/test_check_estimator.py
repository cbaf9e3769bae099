"""The conformance check: every built-in estimator passes (ALR with its bias reported), and deliberately
broken estimators fail it with a message that says what is wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench.conformance import ConformanceError, check_estimator
from lrbench.estimators import EstimatorError, list_estimators
from lrbench.estimators.bp import Backprop
from lrbench.estimators.ulr import UnifiedLikelihoodRatio
from lrbench.suite.cli.main import main

FAST = {"families": ("mlp",), "n": 4}


def statuses(report, check: str) -> dict[str, str]:
    return {r.family: r.status for r in report.rows if r.check == check}


# ----------------------------------------------------------------------------- deliberately broken estimators
class DoubledULR(UnifiedLikelihoodRatio):
    name = "ulr-doubled"
    description = "ULR with its gradient scaled by 2 (deliberately broken)"

    def _estimate(self, model, loss_fn, inputs, targets):
        loss, logs = super()._estimate(model, loss_fn, inputs, targets)
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_(2.0)
        return loss, logs


class AccumulatingBP(Backprop):
    name = "bp-accumulating"
    description = "BP overriding the estimate() template, forgetting to clear .grad (deliberately broken)"

    def estimate(self, model, loss_fn, inputs, targets):
        loss = loss_fn(model(inputs), targets).mean()
        loss.backward()  # adds to whatever .grad held
        self.step += 1
        return loss.detach(), {"forward_passes": 1.0}


class GlobalRandomBP(Backprop):
    name = "bp-global-rng"
    description = "BP plus noise from the global RNG outside the seeded template (deliberately broken)"
    noise_scope = "sample"

    def estimate(self, model, loss_fn, inputs, targets):
        loss, logs = super().estimate(model, loss_fn, inputs, targets)
        for p in model.parameters():
            p.grad.add_(torch.randn_like(p))
        return loss, logs


class ForgetfulULR(UnifiedLikelihoodRatio):
    name = "ulr-forgetful"
    description = "ULR whose load_state_dict ignores the step counter (deliberately broken)"

    def load_state_dict(self, state):
        pass


class HookLeavingBP(Backprop):
    name = "bp-hooks"
    description = "BP that leaves a forward hook registered (deliberately broken)"

    def _estimate(self, model, loss_fn, inputs, targets):
        model.register_forward_hook(lambda *args: None)
        return super()._estimate(model, loss_fn, inputs, targets)


class CrashingBP(Backprop):
    name = "bp-crashing"
    description = "BP that crashes with a TypeError on a module it does not know (deliberately broken)"

    def _estimate(self, model, loss_fn, inputs, targets):
        unknown = [m for m in model.modules() if type(m).__name__ == "Rescale"]
        if unknown:
            raise TypeError("unsupported module")
        return super()._estimate(model, loss_fn, inputs, targets)


class LeafGradEstimator(Backprop):
    name = "leaf-grad"
    description = "asks autograd.grad of a leaf fed through a module (breaks under module hooks)"

    def _estimate(self, model, loss_fn, inputs, targets):
        loss, logs = super()._estimate(model, loss_fn, inputs, targets)
        leaf = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            torch.autograd.grad(nn.Tanh()(leaf).sum(), leaf)
        return loss, logs


BROKEN = [
    (DoubledULR, "statistics", "does not converge to autograd"),
    (AccumulatingBP, "grad", "accumulates into .grad"),
    (GlobalRandomBP, "determinism", "same seed"),
    (ForgetfulULR, "resume", "state_dict after 2 calls"),
    (HookLeavingBP, "leftovers", "hook(s) left registered"),
    (CrashingBP, "refusal", "raised TypeError"),
    (LeafGradEstimator, "harness", "fails under FlopCounterMode"),
]


@pytest.mark.parametrize(("cls", "check", "needle"), BROKEN, ids=[c.name for c, _, _ in BROKEN])
def test_broken_estimator_fails_with_a_message_saying_what_is_wrong(cls, check: str, needle: str) -> None:
    with pytest.raises(ConformanceError, match=check):
        check_estimator(cls, **FAST)
    report = check_estimator(cls, raise_on_failure=False, **FAST)
    failing = {r.check: r.detail for r in report.failures}
    assert check in failing and needle in failing[check], report.table()
    if cls is not GlobalRandomBP:  # unseeded noise also breaks .grad replacement and resume, rightly
        assert list(failing) == [check], report.table()
    assert "FAILED" in report.table()


def test_doubled_gradient_is_reported_as_twice_the_norm() -> None:
    report = check_estimator(DoubledULR, raise_on_failure=False, **FAST)
    stats = report.statistics["mlp"]
    assert stats["ratio"] < 2.0 and 1.8 < stats["norm_ratio"] < 2.2 and stats["cosine"] > 0.95, stats
    assert "not converge to autograd's gradient" in report.failures[0].detail


# ----------------------------------------------------------------------------- built-ins
def test_bp_passes_exactly_on_every_family() -> None:
    report = check_estimator("bp", n=2)
    assert set(statuses(report, "statistics").values()) == {"pass"}
    assert all("exact" in r.detail for r in report.rows if r.check == "statistics")
    assert {r.family for r in report.rows} == {"custom", "mlp", "cnn", "rnn", "vit"}


def test_ulr_passes_on_the_mlp_with_ratio_near_four() -> None:
    """Ratio of the errors of means of n and 16n calls, for an unbiased estimate ≈ 4."""
    report = check_estimator("ulr", **FAST)
    stats = report.statistics["mlp"]
    assert 2.5 <= stats["ratio"] <= 6.5 and stats["cosine"] > 0.99, stats
    assert statuses(report, "refusal") == {"custom": "refused"}  # no LR rule for Rescale: one line


def test_alr_is_declared_biased_and_its_bias_is_reported() -> None:
    report = check_estimator("alr", **FAST)
    [row] = [r for r in report.rows if r.check == "statistics"]
    assert row.status == "bias" and "declared biased" in row.detail and "cos" in row.detail
    assert report.passed


@pytest.mark.slow
@pytest.mark.parametrize("name", [e["name"] for e in list_estimators()])
def test_every_builtin_estimator_passes_on_every_family(name: str) -> None:
    report = check_estimator(name, n=4)
    expected = "bias" if name == "alr" else "pass"
    assert set(statuses(report, "statistics").values()) == {expected}, report.table()


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(EstimatorError, match="unknown model family 'mlpp'"):
        check_estimator("bp", families=("mlpp",))
    with pytest.raises(EstimatorError, match="option 'copies'"):
        check_estimator("ulr", {"copies": 0})

    class NoName(Backprop):
        name = ""

    with pytest.raises(EstimatorError, match="needs name"):
        check_estimator(NoName)


# ----------------------------------------------------------------------------- the command
def test_cli_prints_the_table_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-estimator", "bp", "--families", "mlp", "--n", "2", "--budget", "10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("check-estimator bp (defaults): time budget 10 s")
    assert "mlp     statistics   PASS" in out and "bp: PASSED in" in out


@pytest.mark.parametrize(("argv", "needle"), [
    (["check-estimator", "nothere"], "unknown estimator 'nothere'"),
    (["check-estimator", "ulr", "--copies", "x"], "option 'copies' must be"),
    (["check-estimator", "bp", "--budget", "0"], "--budget must be"),
])
def test_cli_bad_input_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_unregistered_class_with_model_it_cannot_handle() -> None:
    """An estimator that refuses every family fails: nothing could be checked."""

    class RefusesAll(Backprop):
        name = "refuses-all"
        description = "refuses everything"

        def _estimate(self, model: nn.Module, loss_fn, inputs, targets):
            raise EstimatorError("refuses-all handles no model")

    report = check_estimator(RefusesAll, n=1, raise_on_failure=False)
    assert [r.check for r in report.failures] == ["support"]
