"""senet.data: the embedded digits, synthetic tasks, local CIFAR/image folders/FSDD, deterministic loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from senet.data import DATASETS, build_data, collate_padded, default_data, make_loader
from senet.data.synthetic import PERIODS, flagged_channel_examples
from senet.data.tensors import ArrayDataset


@pytest.fixture(scope="module")
def digits():
    return build_data("digits")


def _batches(loader) -> list[torch.Tensor]:
    return [batch.targets.clone() for batch in loader]


def test_digits_is_the_fixed_real_split(digits):
    assert (len(digits.train), len(digits.val)) == (1437, 360)
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10 and not digits.variable_length
    train_x = digits.train.inputs
    assert abs(float(train_x.mean())) < 1e-4 and abs(float(train_x.std()) - 1) < 1e-3  # normalised with train stats
    assert sorted(digits.val.targets.unique().tolist()) == list(range(10))  # stratified
    again = build_data("digits")
    assert torch.equal(again.val.inputs, digits.val.inputs) and torch.equal(again.train.targets, digits.train.targets)


def test_shift_augmentation_is_a_translation_with_background_fill():
    x = torch.arange(16.0).view(1, 4, 4)
    dataset = ArrayDataset(x[None], torch.tensor([3]), shift=1, fill=-5.0)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1], value=-5.0)
    windows = {tuple(padded[:, i : i + 4, j : j + 4].flatten().tolist()) for i in range(3) for j in range(3)}
    torch.manual_seed(0)
    seen = {tuple(dataset[0][0].flatten().tolist()) for _ in range(40)}
    assert seen <= windows and len(seen) > 3  # only translations, and several of them
    assert dataset[0][1] == 3
    assert torch.equal(ArrayDataset(x[None], torch.tensor([3]))[0][0], x)  # shift=0: unchanged


def test_loader_order_is_fixed_by_seed_and_epoch(digits):
    def order(seed: int, epoch: int) -> list[torch.Tensor]:
        loader = make_loader(digits.val, batch_size=64, train=True, seed=seed)
        loader.sampler.set_epoch(epoch)
        return _batches(loader)

    first = order(0, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, order(0, 1)))
    assert not all(torch.equal(a, b) for a, b in zip(first, order(0, 2)))
    assert not all(torch.equal(a, b) for a, b in zip(first, order(1, 1)))


def test_two_ranks_see_the_global_batch_of_one_process(digits):
    """Rank r of R takes every R-th index of the same permutation, so R ranks of batch b = one process of batch R*b."""
    data = torch.utils.data.Subset(digits.val, range(64))
    whole = make_loader(data, batch_size=16, train=True, seed=3)
    ranks = [make_loader(data, batch_size=8, train=True, seed=3, rank=r, world_size=2) for r in range(2)]
    for loader in (whole, *ranks):
        loader.sampler.set_epoch(5)
    for global_batch, *shards in zip(whole, *ranks):
        joined = torch.cat([shard.inputs for shard in shards])
        assert sorted(joined.flatten().tolist()) == sorted(global_batch.inputs.flatten().tolist())


def test_evaluation_shards_cover_every_example_once(digits):
    seen = torch.cat([b.targets for r in range(3) for b in make_loader(digits.val, batch_size=50, train=False, seed=0, rank=r, world_size=3)])
    assert len(seen) == len(digits.val)
    assert torch.equal(seen.sort().values, digits.val.targets.sort().values)


def test_padded_collate_returns_lengths_and_zero_padding():
    items = [(torch.ones(2, 3), torch.tensor(0)), (torch.ones(2, 5), torch.tensor(1))]
    batch = collate_padded(items)
    assert batch.inputs.shape == (2, 2, 5) and batch.lengths.tolist() == [3, 5]
    assert batch.inputs[0, :, 3:].abs().sum() == 0 and batch.inputs[0, :, :3].sum() == 6


def test_flagged_channel_task_is_solvable_by_finding_the_flag():
    """Oracle: the flagged channel has the largest mean; its dominant period gives the class."""
    rng = np.random.default_rng(0)
    examples, labels = flagged_channel_examples(200, channels=8, spatial_shape=(96,), num_classes=4, rng=rng)
    correct = 0
    for x, label in zip(examples, labels):
        flagged = x[x.mean(1).argmax()]
        spectrum = np.abs(np.fft.rfft(flagged - flagged.mean()))
        period = 96 / (spectrum[1:].argmax() + 1)  # 96 samples: periods 3, 4, 6, 8 fall on exact bins
        correct += int(np.argmin([abs(period - p) for p in PERIODS]) == label)
    assert correct / len(labels) > 0.9


def test_synthetic_tasks_have_their_ranks():
    seq = build_data("synthetic1d", train_limit=50, val_limit=20)
    assert seq.variable_length and seq.spatial_dims == 1 and (len(seq.train), len(seq.val)) == (50, 20)
    lengths = {seq.train[i][0].shape[-1] for i in range(50)}
    assert len(lengths) > 5 and min(lengths) >= 32 and max(lengths) <= 96
    vol = build_data("synthetic3d", train_limit=10, val_limit=10)
    assert vol.spatial_dims == 3 and vol.train[0][0].shape == vol.input_shape == (4, 6, 6, 6)


def test_task_defaults():
    assert default_data("image") == "digits"
    assert default_data("audio") == "synthetic1d" and default_data("audio", "/x") == "fsdd"
    assert default_data("volume") == "synthetic3d"
    with pytest.raises(ValueError, match="task must be one of"):
        default_data("text")


def test_bad_names_and_missing_folders_give_clear_errors(tmp_path: Path):
    with pytest.raises(ValueError, match=r"data must be one of .*digits"):
        build_data("mnist")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py/\{data_batch_1,.*test_batch,batches.meta\}"):
        build_data("cifar10", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python/\{train,test,meta\}"):
        build_data("cifar100", data_dir=tmp_path)
    with pytest.raises(ValueError, match="needs --data-dir"):
        build_data("cifar10")
    with pytest.raises(FileNotFoundError, match="fsdd.npz"):
        build_data("fsdd", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no train/"):
        build_data("folder", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        build_data("folder", data_dir=tmp_path / "absent")
    with pytest.raises(ValueError, match="train_limit must be a positive int"):
        build_data("synthetic3d", train_limit=0)


def test_image_folder_with_augmentation(tmp_path: Path):
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in (("blue", (0, 0, 255)), ("red", (255, 0, 0))):
            (tmp_path / split / label).mkdir(parents=True)
            Image.new("RGB", (20, 12), colour).save(tmp_path / split / label / "a.png")
    bundle = build_data("folder", data_dir=tmp_path, image_size=16)
    assert bundle.num_classes == 2 and bundle.input_shape == (3, 16, 16) and not bundle.in_memory
    x, y = bundle.train[1]
    assert x.shape == (3, 16, 16) and y == 1
    assert bundle.val[1][0][0].mean() > bundle.val[0][0][0].mean()  # red has the larger red channel


def test_every_dataset_has_a_task():
    assert {info.task for info in DATASETS.values()} == {"image", "audio", "volume"}


def test_cifar10_jpeg_copy_is_labelled_lossy(shared_data: Path):
    root = shared_data / "cifar10-jpeg"
    if not root.is_dir():
        pytest.skip("cifar10-jpeg is not in shared data")
    bundle = build_data("cifar10-jpeg", data_dir=root, val_limit=10)
    assert len(bundle.train) == 50000 and len(bundle.val) == 10 and bundle.num_classes == 10
    assert "lossy JPEG" in bundle.note
    x, _ = bundle.train[0]
    assert x.shape == (3, 32, 32)


def test_fsdd_spectrograms_have_variable_lengths(shared_data: Path):
    path = shared_data / "fsdd"
    if not (path / "fsdd.npz").is_file():
        pytest.skip("fsdd.npz is not in shared data")
    bundle = build_data("fsdd", data_dir=path)
    assert (len(bundle.train), len(bundle.val)) == (2700, 300) and bundle.variable_length
    lengths = [bundle.val[i][0].shape[-1] for i in range(len(bundle.val))]
    assert bundle.val[0][0].shape[0] == 64 and min(lengths) < max(lengths)
    assert sorted(bundle.val.targets.unique().tolist()) == list(range(10))
