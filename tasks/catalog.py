"""The registry of named tasks (and their variants).

Budgets are in epochs; targets are test accuracies used for time-to-target. Estimator defaults are the
seeds' published settings where known (ESTIMATORS.md: ULR σ = 1e-3, batch 100, Adam 1e-3, per-block
copies for VGG-8 and ResNet-5) and, for the digits tasks, settings we measured to learn (tests/).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import torch

from .datasets import get_dataset
from .errors import TaskError
from .models import (
    build_char_rnn,
    build_mlp,
    build_plain_cnn,
    build_resnet5,
    build_resnet9,
    build_row_rnn,
    build_vgg8,
    build_vit,
    build_xconv_convnet,
)
from .spec import ModelFactory, TaskSpec

TASKS: dict[str, TaskSpec] = {}
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


# Which gradient the LR estimators estimate through train-mode BatchNorm (docs/ESTIMATORS.md).
BATCH_NORM_NOTE = ("; train-mode BatchNorm: ulr/alr estimate the statistics-detached gradient by default "
                   "(batch_norm=rowwise), BP's gradient with batch_norm=coupled")


def register(spec: TaskSpec) -> TaskSpec:
    """Make ``spec`` available under its name (also the way a plugin adds a task). A name already taken, a
    dataset nobody registered or a model factory that is not callable -> TaskError (one line)."""
    if not isinstance(spec, TaskSpec):
        raise TaskError(f"register() takes a lrbench.tasks.TaskSpec, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not NAME_PATTERN.match(spec.name):
        raise TaskError(f"task name {spec.name!r} must be lower-case letters, digits, '-' and '_'")
    if spec.model_options.get("norm") == "batch" and BATCH_NORM_NOTE not in spec.description:
        spec = replace(spec, description=spec.description + BATCH_NORM_NOTE)
    if spec.name in TASKS and TASKS[spec.name] == spec:
        return TASKS[spec.name]  # the same spec again (a plugin loaded twice): nothing to do
    if spec.name in TASKS:
        raise TaskError(f"task name '{spec.name}' is already taken ({TASKS[spec.name].description}); "
                        "give the new task another name")
    get_dataset(spec.dataset)  # unknown -> TaskError listing the registered datasets
    if not callable(spec.model_factory):
        raise TaskError(f"task '{spec.name}': model_factory must be a function returning an nn.Sequential")
    TASKS[spec.name] = spec
    return spec


register_task = register  # the public name (``from lrbench.tasks import register_task``)


def validate_task(spec: TaskSpec) -> None:
    """Build the task's default model on the meta device (no memory, no RNG use): a factory that fails
    or returns no ``nn.Sequential`` of blocks -> TaskError naming the task."""
    from torch import nn

    try:
        with torch.device("meta"):
            model = spec.build_model()
    except TaskError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's factory: reported in one line, not a traceback
        raise TaskError(f"task '{spec.name}': building its model failed: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(model, nn.Sequential):
        raise TaskError(f"task '{spec.name}': model_factory must return an nn.Sequential of blocks, got "
                        f"{type(model).__name__}")


def get_task(name: str) -> TaskSpec:
    """The task called ``name``; unknown -> TaskError listing the valid names."""
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}'; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def list_tasks() -> list[TaskSpec]:
    """Every registered task (variants included), sorted by name."""
    return [TASKS[n] for n in sorted(TASKS)]


def task(name: str, family: str, dataset: str, factory: ModelFactory, options: dict[str, Any], description: str,
         *, target: float, epochs: float, batch_size: int, lr: float, **extra: Any) -> TaskSpec:
    """Register a base task."""
    return register(TaskSpec(name=name, family=family, dataset=dataset, model_factory=factory,
                             model_options=options, description=description, target=target,
                             budget={"max_epochs": epochs}, batch_size=batch_size, lr=lr, **extra))


def variants(base: TaskSpec, **by_suffix: dict[str, Any]) -> None:
    """Register ``<base>-<suffix>`` for each suffix, with those model options changed."""
    for suffix, overrides in by_suffix.items():
        register(base.with_options(f"{base.name}-{suffix}", **overrides))


# ---------------------------------------------------------------- shared settings
MLP = {"widths": (64,), "activation": "relu", "norm": "none"}
CNN = {"channels": (16, 32), "kernel": 3, "pool": "max", "activation": "relu", "norm": "none"}
ROW_RNN = {"cell": "gru", "hidden": 32, "layers": 1, "activation": "tanh"}
VIT = {"patch": 4, "dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 2.0, "embed": "linear", "activation": "gelu"}
ULR_SEED = {"sigma": 1e-3, "injection": "layerwise", "prefix_sharing": True}  # ULR paper: σ = 1e-3, batch 100, Adam 1e-3
VGG8_COPIES = [100, 200, 400, 800, 400, 200, 100, 50]
RESNET5_COPIES = [800, 800, 800, 800, 100]
# Forward-only defaults measured on the digits tasks (tests/test_tasks_learning.py): a control-variate
# baseline is essential (ULR without one stays near chance), σ barely matters in [1e-3, 1e-1] with the
# clean baseline, and layer-wise injection with prefix sharing helps the CNN, RNN and ViT.
LR_COMMON = {"copies": 16, "sigma": 0.01, "baseline": "clean", "injection": "layerwise", "prefix_sharing": True}
FORWARD_ONLY = {"ulr": LR_COMMON, "alr": LR_COMMON, "ulr-block": {"copies": 16, "sigma": 0.01, "baseline": "clean"},
                "es": {"copies": 16, "sigma": 0.01, "baseline": "clean"},
                "spsa": {"directions": 16, "eps": 1e-3}, "fg": {"directions": 16}, "xconv": {"probes": 16}}
DIGITS = {"target": 0.90, "epochs": 20, "batch_size": 32, "lr": 3e-3, "estimator_defaults": FORWARD_ONLY}
MNIST = {"target": 0.97, "epochs": 10, "batch_size": 100, "lr": 1e-3, "estimator_defaults": FORWARD_ONLY}
SEED_CNN = {"epochs": 30, "batch_size": 100, "lr": 1e-3}

# ---------------------------------------------------------------- digits (8×8, offline)
variants(task("digits-mlp", "mlp", "digits", build_mlp, MLP, "MLP 64→64→10 on 8×8 digits", **DIGITS),
         tanh={"activation": "tanh"}, sigmoid={"activation": "sigmoid"}, layernorm={"norm": "layer"},
         wide={"widths": (256, 256)})
variants(task("digits-cnn", "cnn", "digits", build_plain_cnn, CNN,
              "small CNN conv16-pool-conv32-pool-linear on 8×8 digits", **DIGITS),
         tanh={"activation": "tanh"}, batchnorm={"norm": "batch"})
variants(task("digits-rnn", "rnn", "digits", build_row_rnn, ROW_RNN,
              "GRU(32) reading the 8×8 digit row by row (8 steps)", **DIGITS),
         lstm={"cell": "lstm"}, elman={"cell": "elman"})
variants(task("digits-vit", "vit", "digits", build_vit, VIT,
              "ViT 4×4 patches, dim 16, 2 blocks, 2 heads on 8×8 digits", **DIGITS),
         conv={"embed": "conv"}, relu={"activation": "relu"})

# ---------------------------------------------------------------- MNIST / Fashion-MNIST (28×28)
variants(task("mnist-mlp", "mlp", "mnist", build_mlp, {**MLP, "widths": (256, 128)},
              "MLP 784→256→128→10 on MNIST", **MNIST),
         tanh={"activation": "tanh"},
         # the LR-robustness protocol of the seeds' predecessor (GLR): a sigmoid MLP 784-50-10, and its ReLU twin
         glr={"widths": (50,), "activation": "sigmoid"}, relu50={"widths": (50,)})
task("mnist-cnn", "cnn", "mnist", build_plain_cnn, {**CNN, "channels": (32, 64)},
     "CNN conv32-pool-conv64-pool-linear on MNIST", **MNIST)
variants(task("mnist-rnn", "rnn", "mnist", build_row_rnn, {**ROW_RNN, "hidden": 128},
              "GRU(128) reading MNIST row by row (28 steps)", **MNIST),
         lstm={"cell": "lstm"}, elman={"cell": "elman"})
task("mnist-vit", "vit", "mnist", build_vit, {**VIT, "patch": 7, "dim": 64, "depth": 4, "heads": 4},
     "ViT 7×7 patches, dim 64, 4 blocks, 4 heads on MNIST", **MNIST)
task("mnist-xconvnet", "cnn", "mnist", build_plain_cnn, {**CNN, "channels": (16, 32, 32)},
     "XConv MNIST net: conv 1→16, 16→32, 32→32 (3×3, each + max-pool), dense 288→10",
     target=0.98, epochs=24, batch_size=128, lr=3e-3,
     estimator_defaults={"xconv": {"probes": 16}})
task("mnist-resnet5", "cnn", "mnist", build_resnet5,
     {"channels": (32, 32, 64, 128), "activation": "relu", "norm": "batch"},
     "ULR seeds' ResNet-5 on MNIST", target=0.98, **SEED_CNN,
     estimator_defaults={"ulr": {**ULR_SEED, "copies": RESNET5_COPIES}})
task("mnist-vgg8", "cnn", "mnist", build_vgg8,
     {"channels": (32, 32, 64, 64, 128, 128), "hidden": 256, "activation": "relu", "norm": "batch"},
     "ULR seeds' VGG-8 on MNIST", target=0.98, **SEED_CNN,
     estimator_defaults={"ulr": {**ULR_SEED, "copies": VGG8_COPIES}})
task("fmnist-mlp", "mlp", "fmnist", build_mlp, {**MLP, "widths": (256, 128)},
     "MLP 784→256→128→10 on Fashion-MNIST", **{**MNIST, "target": 0.87})
task("fmnist-cnn", "cnn", "fmnist", build_plain_cnn, {**CNN, "channels": (32, 64)},
     "CNN conv32-pool-conv64-pool-linear on Fashion-MNIST", **{**MNIST, "target": 0.89})

# ---------------------------------------------------------------- CIFAR (32×32, crop+flip augmentation)
task("cifar10-resnet5", "cnn", "cifar10", build_resnet5,
     {"channels": (32, 32, 64, 128), "activation": "relu", "norm": "batch"},
     "ULR seeds' ResNet-5 on CIFAR-10", target=0.75, **SEED_CNN,
     estimator_defaults={"ulr": {**ULR_SEED, "copies": RESNET5_COPIES}})
task("cifar10-vgg8", "cnn", "cifar10", build_vgg8,
     {"channels": (32, 32, 64, 64, 128, 128), "hidden": 256, "activation": "relu", "norm": "batch"},
     "ULR seeds' VGG-8 on CIFAR-10", target=0.80, **SEED_CNN,
     estimator_defaults={"ulr": {**ULR_SEED, "copies": VGG8_COPIES}})
task("cifar10-convnet", "cnn", "cifar10", build_xconv_convnet,
     {"channels": (16, 32, 32, 32), "kernel": 5, "activation": "relu", "norm": "none"},
     "XConv CIFAR-10 ConvNet: conv 3→16, 16→32 (5×5), avgpool, 32→32, 32→32, avgpool, FC 2048→10",
     target=0.65, epochs=100, batch_size=128, lr=1e-3, optimizer="sgd", lr_schedule="cosine",
     estimator_defaults={"xconv": {"probes": 16}})
task("cifar10-vit", "vit", "cifar10", build_vit,
     {**VIT, "patch": 4, "dim": 128, "depth": 6, "heads": 4},
     "ViT 4×4 patches, dim 128, 6 blocks, 4 heads on CIFAR-10", target=0.70, epochs=50, batch_size=128,
     lr=1e-3)
task("cifar100-resnet9", "cnn", "cifar100", build_resnet9,
     {"width": 64, "activation": "relu", "norm": "batch"},
     "ResNet-9 (ALR seed) on CIFAR-100", target=0.60, epochs=30, batch_size=100, lr=1e-3,
     estimator_defaults={"alr": {"copies": 100}})

# ---------------------------------------------------------------- text
task("shakespeare-rnn", "rnn", "shakespeare", build_char_rnn,
     {"cell": "lstm", "embedding": 32, "hidden": 128, "layers": 1, "activation": "tanh"},
     "character-level LSTM(128) language model on tiny-shakespeare, 64-character windows "
     "(accuracy per character)", target=0.50, epochs=5, batch_size=64, lr=1e-2,
     data_options={"seq_len": 64})
