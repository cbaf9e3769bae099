"""Datasets: digits split, batching, augmentation, data root, MNIST/Fashion-MNIST/tiny-shakespeare from
the real files, CIFAR on pickle fixtures, and one-line errors for missing/corrupt files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from lrbench.tasks import TaskError, data_root, get_task, load_dataset
from lrbench.tasks.augment import crop_flip, random_crop, random_hflip
from lrbench.tasks.data import iterate_batches, split_generator
from lrbench.tasks.datasets import images
from tests.helpers.data_files import copy_dataset, write_cifar_fixture

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not (SHARED / "MNIST").is_dir(), reason="shared dataset copies not present")


@pytest.fixture(scope="session")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable data root holding copies of MNIST, Fashion-MNIST and tiny-shakespeare."""
    root = tmp_path_factory.mktemp("lrdata")
    for name in ("mnist", "fmnist", "shakespeare"):
        copy_dataset(SHARED, root, name)
    return root


# ------------------------------------------------------------------ digits
def test_digits_split_is_fixed_stratified_and_in_unit_range() -> None:
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    assert [len(s[0]) for s in (a.train, a.val, a.test)] == [1257, 180, 360]
    assert torch.equal(a.test[0], b.test[0]) and not torch.equal(a.test[0], c.test[0])
    assert a.train[0].shape[1:] == (1, 8, 8) and a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert float(a.train[0].min()) == 0.0 and float(a.train[0].max()) == 1.0
    counts = torch.bincount(a.test[1], minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37      # stratified: 360 / 10 per class
    # no sample appears in two splits
    flat = {tuple(r.tolist()) for r in a.test[0].flatten(1)}
    assert sum(tuple(r.tolist()) in flat for r in a.train[0].flatten(1)) <= 5  # digits has a few duplicates


# ------------------------------------------------------------------ batching
def test_batches_seeded_shuffle_covers_everything() -> None:
    data = load_dataset("digits")
    first = [y for _, y in data.batches("train", 100, seed=3, epoch=0)]
    again = [y for _, y in data.batches("train", 100, seed=3, epoch=0)]
    other = [y for _, y in data.batches("train", 100, seed=3, epoch=1)]
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    assert not torch.equal(torch.cat(first), torch.cat(other))
    assert [len(y) for y in first] == [100] * 12 + [57]
    assert torch.equal(torch.cat(first).sort().values, data.train[1].sort().values)
    assert data.num_batches("train", 100) == 13
    assert len(list(data.batches("train", 100, drop_last=True))) == 12
    # evaluation: fixed order, no augmentation
    xs = torch.cat([x for x, _ in data.batches("test", 64)])
    assert torch.equal(xs, data.test[0])
    with pytest.raises(TaskError, match="unknown split 'dev'; valid splits: train, val, test"):
        data.split("dev")


def test_iterate_batches_applies_augment_with_the_generator() -> None:
    x, y = torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10)
    seen = []
    batches = list(iterate_batches(x, y, 4, augment=lambda b, g: seen.append(len(b)) or b + 100))
    assert seen == [4, 4, 2] and float(batches[0][0][0]) == 100.0


# ------------------------------------------------------------------ augmentation
def test_random_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    x = torch.rand(16, 3, 8, 8)
    out = random_crop(x, split_generator(0), padding=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, x)  # some sample moved
    assert torch.equal(random_crop(x, split_generator(0), padding=2), out)  # seeded


def test_flip_and_crop_flip() -> None:
    x = torch.rand(64, 3, 32, 32)
    flipped = random_hflip(x, split_generator(1))
    same = [torch.equal(flipped[i], x[i]) for i in range(64)]
    mirrored = [torch.equal(flipped[i], x[i].flip(-1)) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 16 <= sum(mirrored) <= 48
    out = crop_flip(x, split_generator(2))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


# ------------------------------------------------------------------ data root
def test_data_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LRBENCH_DATA", raising=False)
    assert data_root() == Path("~/.cache/lrbench/data").expanduser()
    monkeypatch.setenv("LRBENCH_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"


# ------------------------------------------------------------------ MNIST / Fashion-MNIST
@needs_shared
@pytest.mark.parametrize("name,first_labels", [("mnist", [5, 4, 9]), ("fmnist", [9, 0, 0])])
def test_real_images_load_and_cache(real_root: Path, name: str, first_labels: list[int]) -> None:
    data = load_dataset(name, data_dir=real_root)
    assert [len(s[0]) for s in (data.train, data.val, data.test)] == [55000, 5000, 10000]
    assert data.train[0].shape[1:] == (1, 28, 28) and data.train[0].dtype == torch.float32
    assert float(data.train[0].min()) == 0.0 and float(data.train[0].max()) == 1.0
    assert torch.bincount(data.test[1]).tolist() == ([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
                                                       if name == "mnist" else [1000] * 10)
    assert data.train[1][:3].tolist() == first_labels
    assert (real_root / "lrbench-cache" / f"{name}.pt").is_file()
    start = time.perf_counter()
    again = load_dataset(name, data_dir=real_root)
    assert time.perf_counter() - start < 5.0
    assert torch.equal(again.val[0], data.val[0]) and torch.equal(again.test[1], data.test[1])


@needs_shared
def test_env_var_data_root(real_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LRBENCH_DATA", str(real_root))
    assert len(get_task("mnist-mlp").load_data().test[0]) == 10000


def test_missing_mnist_is_one_line_naming_files_and_folder(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as err:
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("mnist not found: put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                          "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in "
                          f"{tmp_path / 'nowhere' / 'MNIST' / 'raw'}/")
    assert "needs internet" in msg


@needs_shared
def test_corrupt_mnist_file_is_named(tmp_path: Path) -> None:
    root = copy_dataset(SHARED, tmp_path, "mnist")
    bad = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    payload = bytearray(bad.read_bytes())
    payload[100] ^= 0xFF
    bad.write_bytes(bytes(payload))
    with pytest.raises(TaskError) as err:
        load_dataset("mnist", data_dir=root)
    assert str(err.value) == (f"mnist: file {bad} is corrupt (md5 mismatch, expected "
                              "d53e105ee54ea40749a09fcbcd1e9432); replace it with the original file")


def test_data_root_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "root.txt"
    file.write_text("x")
    with pytest.raises(TaskError, match="is not a folder; pass --data-dir or set LRBENCH_DATA"):
        load_dataset("fmnist", data_dir=file)


# ------------------------------------------------------------------ CIFAR on pickle fixtures
@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loads_real_pickle_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                        classes: int) -> None:
    fixture_cls, arrays = write_cifar_fixture(tmp_path, name)
    monkeypatch.setitem(images.TORCHVISION_CLASSES, name, fixture_cls)
    data = load_dataset(name, data_dir=tmp_path, seed=0)
    assert data.num_classes == classes and data.input_shape == (3, 32, 32)
    assert [len(s[0]) for s in (data.train, data.val, data.test)] == [90, 10, 20]
    assert torch.equal(data.test[0], torch.from_numpy(arrays["test_x"]).float() / 255)
    assert torch.equal(data.test[1], torch.from_numpy(arrays["test_y"]))
    train_x = torch.cat([data.train[0], data.val[0]])
    # train + val is a permutation of the file's training images: same multiset of pixel values
    expected = torch.from_numpy(arrays["train_x"]).double() / 255
    assert torch.equal(train_x.double().flatten().sort().values, expected.float().double().flatten().sort().values)
    assert data.augment is crop_flip
    batch, _ = next(data.batches("train", 8, seed=0))
    assert batch.shape == (8, 3, 32, 32)
    assert (tmp_path / "lrbench-cache" / f"{name}.pt").is_file()


def test_cifar_corrupt_and_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixture_cls, _ = write_cifar_fixture(tmp_path, "cifar10")
    monkeypatch.setitem(images.TORCHVISION_CLASSES, "cifar10", fixture_cls)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(TaskError, match=r"^cifar10: file .*data_batch_3 is corrupt \(md5 mismatch, expected "):
        load_dataset("cifar10", data_dir=tmp_path)
    monkeypatch.undo()
    with pytest.raises(TaskError) as err:          # production class, empty root
        load_dataset("cifar10", data_dir=tmp_path / "empty")
    assert str(err.value).startswith("cifar10 not found: put data_batch_1, data_batch_2, data_batch_3, "
                                     "data_batch_4, data_batch_5, test_batch, batches.meta in ")
    assert "cifar-10-batches-py/" in str(err.value)


# ------------------------------------------------------------------ tiny-shakespeare
@needs_shared
def test_shakespeare_windows(real_root: Path) -> None:
    data = load_dataset("shakespeare", data_dir=real_root, seq_len=32)
    x, y = data.train
    assert x.dtype == torch.int64 and x.shape[1] == 32 and data.num_classes == 65
    assert len(x) == (int(1115394 * 0.9) - 1) // 32
    assert torch.equal(x[0, 1:], y[0, :-1]) and torch.equal(x[1, 0:1], y[0, -1:])
    from lrbench.tasks.datasets.shakespeare import decode
    assert decode(x[0]).startswith("First Citizen:")
    assert len(data.val[0]) > 0 and len(data.test[0]) > 0


def test_shakespeare_custom_path_and_errors(tmp_path: Path) -> None:
    text = tmp_path / "tiny.txt"
    text.write_text("To be, or not to be: that is the question.\n" * 20)
    data = load_dataset("shakespeare", data_dir=tmp_path, path=str(text), seq_len=8)
    assert data.train[0].shape[1] == 8
    with pytest.raises(TaskError) as err:
        load_dataset("shakespeare", data_dir=tmp_path / "none")
    assert str(err.value).startswith(f"shakespeare not found: put input.txt (tiny-shakespeare, karpathy/char-rnn) "
                                     f"at {tmp_path / 'none' / 'text' / 'tinyshakespeare' / 'input.txt'}")
    corrupt = tmp_path / "text" / "tinyshakespeare" / "input.txt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text("First Citizen:\n")
    with pytest.raises(TaskError, match=r"^shakespeare: file .*input.txt is corrupt \(md5 mismatch, expected "
                                        r"6fb458f1232090904fb40fe944165e91\)"):
        load_dataset("shakespeare", data_dir=tmp_path)
    with pytest.raises(TaskError, match="character '€' is not in the tiny-shakespeare vocabulary"):
        text.write_text("price: €1 " * 10)
        load_dataset("shakespeare", data_dir=tmp_path, path=str(text), seq_len=4)
    with pytest.raises(TaskError, match="dataset 'shakespeare' takes no option 'window'"):
        load_dataset("shakespeare", data_dir=tmp_path, window=3)


def test_unreadable_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixture_cls, arrays = write_cifar_fixture(tmp_path, "cifar10", seed=4)
    monkeypatch.setitem(images.TORCHVISION_CLASSES, "cifar10", fixture_cls)
    cache = tmp_path / "lrbench-cache" / "cifar10.pt"
    cache.parent.mkdir()
    cache.write_bytes(b"not a torch file")
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert torch.equal(data.test[1], torch.from_numpy(arrays["test_y"]))
    assert cache.stat().st_size > 1000                        # rewritten with the decoded tensors
    small = data.subset(train=7, test=3)
    assert len(small.train[0]) == 7 and len(small.test[0]) == 3 and len(small.val[0]) == len(data.val[0])


def test_failed_download_says_it_needs_internet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import FashionMNIST

    offline = type("FashionMNIST", (FashionMNIST,), {"mirrors": ["http://127.0.0.1:9/"]})  # refused at once
    monkeypatch.setitem(images.TORCHVISION_CLASSES, "fmnist", offline)
    with pytest.raises(TaskError) as err:
        load_dataset("fmnist", data_dir=tmp_path, download=True)
    assert str(err.value) == (
        "fmnist: download failed (Error downloading train-images-idx3-ubyte.gz); downloading needs internet, "
        "or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz in {tmp_path / 'FashionMNIST' / 'raw'}/ by hand")
