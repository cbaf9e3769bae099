"""The example plugin examples/lrbench-dfa (direct feedback alignment, Nøkland 2016), used through its
entry points exactly as a researcher's installed package would be."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

from lrbench import plugins
from lrbench.estimators import EstimatorError, get_estimator
from lrbench.suite.cli.main import main

INSTALLED = any(ep.name == "dfa" for ep in metadata.entry_points(group="lrbench.estimators"))
pytestmark = pytest.mark.skipif(not INSTALLED, reason="the example plugin is not installed: "
                                "pip install --no-deps -e examples/lrbench-dfa (.ci/run does)")


@pytest.fixture
def dfa():
    plugins.load_entry_points(force=True)
    return get_estimator("dfa", seed=3)


def ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets, reduction="none")


def net(*widths: int) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1])).double()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(16, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,), generator=gen)


def autograd(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(ce(model(x), y).mean(), list(model.parameters())))


def test_dfa_is_backprop_when_the_feedback_matrix_is_the_transposed_forward_weight(dfa, monkeypatch) -> None:
    """One hidden layer: BP's δh = e W₂, DFA's δh = e Bᵀ; with B = W₂ᵀ the two updates are the same."""
    model, (x, y) = net(6, 5, 3), batch()
    monkeypatch.setattr(dfa, "feedback", lambda layer, width, classes, like: model[3].weight.detach().T)
    loss, _ = dfa.estimate(model, ce, x, y)
    for p, g in zip(model.parameters(), autograd(model, x, y), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-14)
    assert float(loss) == pytest.approx(float(ce(model(x), y).mean().detach()), rel=1e-12)


def test_dfa_output_layer_is_exact_and_hidden_layers_are_not(dfa) -> None:
    model, (x, y) = net(6, 5, 4, 3), batch()
    dfa.estimate(model, ce, x, y)
    grads = autograd(model, x, y)
    params = list(model.parameters())
    torch.testing.assert_close(params[-1].grad, grads[-1])        # δa_L = e: the output layer's gradient
    torch.testing.assert_close(params[-2].grad, grads[-2])
    cosine = nn.functional.cosine_similarity(params[0].grad.flatten(), grads[0].flatten(), dim=0)
    assert abs(float(cosine)) < 0.95  # random feedback: not the gradient before alignment


def test_dfa_refuses_a_conv_net_in_one_line(dfa) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)).double()
    with pytest.raises(EstimatorError, match=r"^dfa handles an nn.Sequential .* module '0' is Conv2d") as info:
        dfa.estimate(model, ce, torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1]))
    assert "\n" not in str(info.value)


def test_entry_points_register_the_estimator_task_and_paper(capsys) -> None:
    assert main(["list", "papers"]) == 0
    out = capsys.readouterr().out
    assert "dfa-digits" in out and "[entry point lrbench-dfa 0.1.0]" in out
    for kind, name in (("estimator", "dfa"), ("task", "digits-mlp3"), ("paper", "dfa-digits")):
        assert plugins.origin(kind, name) == "entry point lrbench-dfa 0.1.0"


def test_check_estimator_dfa(capsys) -> None:
    """Declared biased: its bias is reported; CNN, RNN and ViT are refused in one line each."""
    assert main(["check-estimator", "dfa", "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert "mlp     statistics   BIAS" in out and "dfa: PASSED" in out
    for family in ("cnn", "rnn", "vit", "custom"):
        assert f"{family:7s} refusal      REFUSED  dfa handles an nn.Sequential" in out


def test_suite_with_the_plugin_through_entry_points_runs_reports_and_resumes(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "dfa.yaml"
    suite.write_text("defaults: {max_steps: 2, max_epochs: null, train_subset: 64, accelerator: cpu, "
                     "grad_quality_every: 1}\n"
                     "grid: {task: [digits-mlp, digits-mlp3], estimator: [bp, dfa]}\n")
    out = tmp_path / "results"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0
    assert "4 runs: 4 run now, 0 already done, 0 failed" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "dfa" in report and "digits-mlp3" in report
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0
    assert "4 runs: 0 run now, 4 already done, 0 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_dfa_learns_the_deeper_digits_mlp(tmp_path: Path) -> None:
    """3 epochs on digits-mlp3 (1,257 training images): measured test accuracy 0.925 (BP 0.953, ULR 0.922,
    ALR 0.917: lrbench paper dfa-digits --budget quick)."""
    from lrbench.api import run_config

    record = run_config({"task": "digits-mlp3", "estimator": "dfa", "max_epochs": 3, "accelerator": "cpu"},
                        out=tmp_path)
    assert record["status"] == "completed" and record["metrics"]["test_accuracy_final"] > 0.8, record["metrics"]
