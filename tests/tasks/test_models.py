"""Model families: block structure, only estimator-known parametric modules, and numerical checks of the
hand-built pieces (RNN cells, attention, patch embedding, the seeds' architectures)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrbench.estimators.modules import AddParameter, ClassToken
from lrbench.tasks import TaskError, get_task, list_tasks
from lrbench.tasks.models import (
    ElmanCell,
    LSTMCell,
    Normalize,
    Recurrent,
    SelfAttention,
    build_resnet9,
    build_resnet18,
    count_parameters,
)
from lrbench.tasks.models.rnn import GRUCell
from lrbench.tasks.models.vit import Patches

KNOWN_PARAMETRIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.Embedding,
                    AddParameter, ClassToken)


def parametric_blocks(model: nn.Sequential) -> int:
    return sum(any(p.requires_grad for p in block.parameters()) for block in model)


@pytest.mark.parametrize("name", [s.name for s in list_tasks()])
def test_every_task_model_is_a_sequential_of_known_modules(name: str) -> None:
    spec = get_task(name)
    model = spec.build_model()
    assert isinstance(model, nn.Sequential) and len(model) >= 3
    for mod_name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            assert isinstance(module, KNOWN_PARAMETRIC), f"{name}: {mod_name} is a {type(module).__name__}"
    leading = model[0][0] if isinstance(model[0], nn.Sequential) else model[0]
    assert isinstance(leading, (Normalize, nn.Embedding))      # normalisation is the model's first op
    assert spec.num_parameters() == count_parameters(model)


def test_seed_architectures_have_the_published_shapes() -> None:
    xconv = get_task("mnist-xconvnet").build_model()
    dense = [m for m in xconv.modules() if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(288, 10)]
    assert [m.out_channels for m in xconv.modules() if isinstance(m, nn.Conv2d)] == [16, 32, 32]
    assert count_parameters(xconv) == 16938
    convnet = get_task("cifar10-convnet").build_model()
    assert [(d.in_features, d.out_features) for d in convnet.modules() if isinstance(d, nn.Linear)] == [(2048, 10)]
    assert [m.kernel_size for m in convnet.modules() if isinstance(m, nn.Conv2d)] == [(5, 5)] * 4
    # one parametric block per entry of the seeds' per-block copy lists
    assert parametric_blocks(get_task("cifar10-vgg8").build_model()) == 8
    assert parametric_blocks(get_task("cifar10-resnet5").build_model()) == 5
    assert parametric_blocks(get_task("mnist-resnet5").build_model()) == 5


def test_resnet18_and_resnet9_parameter_counts_match_the_references() -> None:
    import torchvision

    reference = sum(p.numel() for p in torchvision.models.resnet18(weights=None).parameters())
    model = build_resnet18()
    assert count_parameters(model) == reference == 11_689_512
    assert len(model) == 11                          # Normalize, stem, 8 basic blocks, head
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    assert count_parameters(build_resnet9((3, 32, 32), 10, (0.5,) * 3, (0.25,) * 3)) == 6_573_130


def test_model_options_from_command_line_strings() -> None:
    spec = get_task("digits-cnn")
    model = spec.build_model(channels="8,12", kernel="5", activation="tanh")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 12] and convs[0].kernel_size == (5, 5)
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    with pytest.raises(TaskError, match="model option 'kernel' must be an integer, got 'big'"):
        spec.build_model(kernel="big")
    with pytest.raises(TaskError, match="unknown norm 'group'; valid norms: none, batch, layer"):
        spec.build_model(norm="group")
    with pytest.raises(TaskError, match="unknown cell 'tcn'; valid cells: elman, gru, lstm"):
        get_task("digits-rnn").build_model(cell="tcn")
    torch.manual_seed(3)
    a = spec.build_model()
    torch.manual_seed(3)
    b = spec.build_model()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_normalize_uses_dataset_statistics() -> None:
    spec = get_task("digits-mlp")
    data = spec.load_data()
    normalized = spec.build_model()[0](data.train[0])
    assert abs(float(normalized.mean())) < 0.02 and abs(float(normalized.std()) - 1.0) < 0.02
    norm = Normalize((0.5, 0.25, 0.0), (0.5, 0.5, 1.0))
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(norm(x), expected)


# ------------------------------------------------------------------ RNN cells
def _unroll_reference(cell: nn.Module, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    out = []
    for t in range(x.shape[1]):
        if c is None:
            h = cell(x[:, t], h)
        else:
            h, c = cell(x[:, t], (h, c))
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("kind", ["lstm", "elman"])
def test_cells_match_torch_cells(kind: str) -> None:
    torch.manual_seed(0)
    ours = LSTMCell(5, 7) if kind == "lstm" else ElmanCell(5, 7)
    ref = nn.LSTMCell(5, 7) if kind == "lstm" else nn.RNNCell(5, 7)
    with torch.no_grad():
        ref.weight_ih.copy_(ours.linear.weight[:, :5])
        ref.weight_hh.copy_(ours.linear.weight[:, 5:])
        ref.bias_ih.copy_(ours.linear.bias)
        ref.bias_hh.zero_()
    x = torch.randn(3, 6, 5)
    zeros = torch.zeros(3, 7)
    expected = _unroll_reference(ref, x, zeros, zeros if kind == "lstm" else None)
    assert torch.allclose(Recurrent(ours)(x), expected, atol=1e-6)
    assert torch.allclose(Recurrent(ours, return_sequence=False)(x), expected[:, -1], atol=1e-6)


def test_gru_cell_formula() -> None:
    torch.manual_seed(0)
    cell = GRUCell(3, 4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    z, r = torch.sigmoid(torch.cat([x, h], 1) @ cell.gates.weight.T + cell.gates.bias).chunk(2, 1)
    n = torch.tanh(torch.cat([x, r * h], 1) @ cell.candidate.weight.T + cell.candidate.bias)
    out, _ = cell(x, (h,))
    assert torch.allclose(out, (1 - z) * n + z * h, atol=1e-6)


def test_recurrent_calls_each_linear_once_per_time_step() -> None:
    model = get_task("digits-rnn").build_model()
    calls: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    model(torch.rand(2, 1, 8, 8))
    assert calls == {"1.cell.gates": 8, "1.cell.candidate": 8, "2": 1}
    lm = get_task("shakespeare-rnn").build_model(hidden=8, embedding=4)
    assert lm(torch.randint(0, 65, (2, 10))).shape == (2, 10, 65)
    per_sample = get_task("shakespeare-rnn").loss_fn(torch.zeros(2, 10, 65), torch.zeros(2, 10, dtype=torch.long))
    assert torch.allclose(per_sample, torch.full((2,), float(torch.log(torch.tensor(65.0)))))


# ------------------------------------------------------------------ ViT pieces
def test_attention_matches_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    ours = SelfAttention(8, 2)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(3, 5, 8)
    assert torch.allclose(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5)


def test_linear_patch_embedding_equals_strided_conv() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 4, stride=4)
    linear = nn.Linear(48, 6)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(6, 48))
        linear.bias.copy_(conv.bias)
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(linear(Patches(4)(x)), conv(x).flatten(2).transpose(1, 2), atol=1e-6)


def test_vit_token_layout() -> None:
    model = get_task("cifar10-vit").build_model(dim=16, depth=1)
    pos = next(m for m in model.modules() if isinstance(m, AddParameter))
    assert tuple(pos.param.shape) == (65, 16)                     # 8×8 patches + class token
    assert sum(isinstance(m, ClassToken) for m in model.modules()) == 1
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(TaskError, match="vit: patch 5 does not divide the 32x32 image"):
        get_task("cifar10-vit").build_model(patch=5)
