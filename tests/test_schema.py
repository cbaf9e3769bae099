"""lrbench/schema.py: the one definition of the run config and record; docs/RESULTS.md matches it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lrbench.schema import (
    METRIC_KEYS,
    NON_RESULT_KEYS,
    RECORD_KEYS,
    RESULT_KEYS,
    RUNTIME_KEYS,
    RunConfig,
    config_hash,
    run_id,
)

RESULTS_MD = Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"


def _documented_record() -> dict:
    """The first JSON example of docs/RESULTS.md, ``// comments`` removed."""
    block = re.search(r"```json\n(.*?)```", RESULTS_MD.read_text(), re.S).group(1)
    return json.loads(re.sub(r"//[^\n]*", "", block))


def test_results_md_record_matches_the_schema() -> None:
    record = _documented_record()
    assert tuple(record) == RECORD_KEYS
    assert set(record["config"]) == set(RESULT_KEYS)
    assert tuple(record["metrics"]) == METRIC_KEYS


def test_results_md_names_every_runtime_key_and_the_id_formula() -> None:
    text = RESULTS_MD.read_text()
    assert 'run_id = f"{task}__{estimator}__{hash10}__s{seed}"' in text
    for key in RUNTIME_KEYS:
        assert f"`{key}`" in text, key
    assert set(NON_RESULT_KEYS) == {"seed", *RUNTIME_KEYS}


def test_run_id_is_unchanged_for_a_stored_config() -> None:
    """A record's config of the quick suite made before the schema existed (commit f0caea6) keeps its id."""
    stored = {"task": "digits-mlp", "estimator": "bp", "estimator_options": {},
              "model_options": {"widths": [64], "activation": "relu", "norm": "none"}, "optimizer": "adam",
              "lr": 0.003, "weight_decay": 0.0, "lr_schedule": "none", "batch_size": 32, "max_epochs": 8,
              "max_steps": None, "train_subset": None, "seed": 0, "accelerator": "cpu", "devices": 1,
              "strategy": "auto", "grad_quality_every": 20, "robustness": None, "init_from": None}
    config = RunConfig.from_mapping(stored)
    assert config.run_id == run_id(stored) == "digits-mlp__bp__3f79cff7ef__s0"
    assert run_id({**stored, "data_dir": "/x", "progress": False, "wandb": True}) == config.run_id
    assert config.result_config() == stored
    assert config_hash({**stored, "lr": 0.01}) != config_hash(stored)


def test_run_config_is_a_read_only_mapping() -> None:
    config = RunConfig(task="digits-mlp")
    assert config["estimator"] == config.estimator == "bp" and dict(config) == config.to_dict()
    assert set(config) == set(RESULT_KEYS) | set(RUNTIME_KEYS)
    with pytest.raises(KeyError, match="unknown config key 'out'"):
        RunConfig.from_mapping({"task": "digits-mlp", "out": "results"})
    with pytest.raises(AttributeError):
        config.lr = 0.1  # type: ignore[misc]


def test_schema_imports_neither_torch_nor_pandas() -> None:
    code = "import sys, lrbench.schema; print(sorted(m for m in ('torch', 'pandas', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_added_result_key_at_its_default_keeps_the_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule a new result key (e.g. a compute budget) relies on: absent or at its default -> same id."""
    import lrbench.schema as schema

    base = {"task": "digits-mlp", "estimator": "bp", "seed": 0, "lr": 0.003}
    before = run_id(base)
    monkeypatch.setattr(schema, "ADDED_KEYS", {"budget": None})
    assert run_id({**base, "budget": None}) == before
    assert run_id({**base, "budget": 100}) != before
