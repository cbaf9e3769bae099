"""Task registry and TaskSpec contract: names, errors, model options, JSON description."""

from __future__ import annotations

import json

import pytest
import torch

from lrbench.tasks import TaskError, TaskSpec, get_task, list_tasks


def test_unknown_task_is_one_line_listing_valid_names() -> None:
    with pytest.raises(TaskError) as err:
        get_task("no-such-task")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("unknown task 'no-such-task'; valid tasks: ")
    assert "digits-mlp" in msg and "digits-cnn" in msg


def test_digits_specs_build_and_score() -> None:
    for name in ("digits-mlp", "digits-cnn"):
        spec = get_task(name)
        assert isinstance(spec, TaskSpec) and spec.dataset == "digits"
        model = spec.build_model()
        assert isinstance(model, torch.nn.Sequential)
        x = torch.rand(5, 1, 8, 8)
        y = torch.tensor([0, 1, 2, 3, 4])
        out = model(x)
        assert out.shape == (5, 10)
        assert spec.loss_fn(out, y).shape == (5,)
        assert 0 <= spec.correct(out, y) <= 5


def test_model_option_override_and_unknown_option() -> None:
    spec = get_task("digits-mlp")
    assert spec.num_parameters() == 64 * 64 + 64 + 64 * 10 + 10
    assert spec.num_parameters(widths="32,16") == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    with pytest.raises(TaskError, match=r"^task 'digits-mlp' has no model option 'depth'; valid options: "
                                        r"activation, norm, widths$"):
        spec.build_model(depth=3)
    with pytest.raises(TaskError, match="unknown activation 'nope'; valid activations: relu, tanh"):
        spec.build_model(activation="nope")


def test_list_tasks_json() -> None:
    rows = [spec.to_json() for spec in list_tasks()]
    text = json.dumps(rows)
    assert "digits-mlp" in text
    row = next(r for r in rows if r["name"] == "digits-cnn")
    assert row["family"] == "cnn" and row["dataset"] == "digits"
    assert row["num_parameters"] == 6090
