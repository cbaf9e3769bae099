"""lrbench.tasks: datasets, model families and task specs.

    from lrbench.tasks import get_task, list_tasks, TaskError
    spec = get_task("digits-mlp")
    model = spec.build_model(widths=(32, 32))      # nn.Sequential of blocks; inputs in [0, 1]
    data = spec.load_data(data_dir=None, device="cpu")
    for x, y in data.batches("train", spec.batch_size, seed=0, epoch=0):
        losses = spec.loss_fn(model(x), y)          # (N,)
    accuracy = spec.correct(model(x_test), y_test) / y_test.numel()

Layout (one job per module):

    errors.py          TaskError (one-line messages)
    data.py            TaskData, data root (--data-dir > $LRBENCH_DATA > ~/.cache/lrbench/data), batching
    augment.py         tensor augmentations (random crop + flip for CIFAR), seeded
    datasets/          registry + loaders: digits (sklearn), images (torchvision MNIST/FMNIST/CIFAR with
                       md5 checks, decoded-tensor cache), shakespeare (char LM windows)
    models/            layers (Normalize, Residual, factories), mlp, cnn (digits CNN, XConv nets, VGG-8,
                       ResNet-5/9/18), rnn (Elman/GRU/LSTM from Linear, unrolled), vit
    spec.py            TaskSpec (loss, metric, target, budget, optimizer, estimator defaults, to_json)
    catalog.py         the named tasks and their variants
    testing.py         test helpers: copy real dataset files, CIFAR pickle fixtures
"""

from .catalog import TASKS, get_task, list_tasks, register_task, validate_task
from .data import TaskData, data_root, iterate_batches
from .datasets import DATASETS, DatasetInfo, get_dataset, load_dataset, register_dataset
from .errors import TaskError
from .spec import TaskSpec, count_correct, per_sample_cross_entropy

__all__ = [
    "DATASETS",
    "TASKS",
    "DatasetInfo",
    "TaskData",
    "TaskError",
    "TaskSpec",
    "count_correct",
    "data_root",
    "get_dataset",
    "get_task",
    "iterate_batches",
    "list_tasks",
    "load_dataset",
    "per_sample_cross_entropy",
    "register_dataset",
    "register_task",
    "validate_task",
]
