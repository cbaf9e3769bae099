"""Every task with train-mode BatchNorm says which gradient ulr/alr estimate through it (issue 13)."""

from __future__ import annotations

from torch import nn

from lrbench.tasks import get_task
from lrbench.tasks.catalog import BATCH_NORM_NOTE, list_tasks


def test_batchnorm_tasks_name_the_gradient_each_mode_estimates() -> None:
    with_note = {t.name for t in list_tasks() if BATCH_NORM_NOTE in t.description}
    batch_norm = {t.name for t in list_tasks() if t.model_options.get("norm") == "batch"}
    assert with_note == batch_norm
    assert {"digits-cnn-batchnorm", "cifar10-resnet5", "cifar10-vgg8", "cifar100-resnet9"} <= batch_norm
    assert "statistics-detached" in get_task("digits-cnn-batchnorm").description
    assert get_task("digits-cnn-batchnorm").description.count("batch_norm=rowwise") == 1
    model = get_task("digits-cnn-batchnorm").build_model()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in get_task("digits-cnn").build_model().modules())
