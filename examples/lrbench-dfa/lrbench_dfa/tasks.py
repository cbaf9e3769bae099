"""``digits-mlp3``: the 8×8 digits with a deeper MLP (three tanh hidden layers of 64), a shape direct
feedback alignment handles and where its gap to backprop shows (one hidden layer would hide it)."""

from __future__ import annotations

from lrbench.tasks import TaskSpec
from lrbench.tasks.models import build_mlp

FORWARD_ONLY = {"copies": 16, "sigma": 0.01, "baseline": "clean", "injection": "layerwise", "prefix_sharing": True}

TASKS = [
    TaskSpec(name="digits-mlp3", family="mlp", dataset="digits", model_factory=build_mlp,
             model_options={"widths": (64, 64, 64), "activation": "tanh", "norm": "none"},
             description="MLP 64→64→64→64→10 (tanh) on 8×8 digits [lrbench-dfa]", target=0.90,
             budget={"max_epochs": 20}, batch_size=32, lr=3e-3,
             estimator_defaults={"ulr": FORWARD_ONLY, "alr": FORWARD_ONLY, "dfa": {}}),
]
