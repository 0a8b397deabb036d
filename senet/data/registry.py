"""Data sets by name, and the default data set of each task (the rank of the data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from senet.data.bundle import DataBundle, limit_bundle
from senet.data.digits import load_digits_bundle
from senet.data.fsdd import load_fsdd_bundle
from senet.data.images import load_cifar_bundle, load_folder_bundle
from senet.data.synthetic import synthetic_sequence_bundle, synthetic_volume_bundle

__all__ = ["DataOptions", "DatasetInfo", "DATASETS", "TASKS", "build_data", "default_data"]

TASKS: tuple[str, ...] = ("image", "audio", "volume")


@dataclass(frozen=True)
class DataOptions:
    """What a loader may use: the folder or file (``data_dir``), augmentation, and the side of folder images."""

    data_dir: Path | None = None
    augment: bool = True
    image_size: int = 32


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str  # one of TASKS: image (2-D), audio (1-D), volume (3-D)
    summary: str
    load: Callable[[DataOptions], DataBundle]


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", "image", "scikit-learn's bundled 8x8 digits (embedded, real)",
                    lambda o: load_digits_bundle(augment=o.augment)),
        DatasetInfo("cifar10", "image", "CIFAR-10 from --data-dir (torchvision layout)",
                    lambda o: load_cifar_bundle("cifar10", o.data_dir, augment=o.augment)),
        DatasetInfo("cifar100", "image", "CIFAR-100 from --data-dir (torchvision layout)",
                    lambda o: load_cifar_bundle("cifar100", o.data_dir, augment=o.augment)),
        DatasetInfo("cifar10-jpeg", "image", "the lossy JPEG copy of CIFAR-10 in ImageFolder layout, from --data-dir",
                    lambda o: load_folder_bundle(o.data_dir, augment=o.augment, cifar_jpeg=True)),
        DatasetInfo("folder", "image", "any ImageFolder tree --data-dir/{train,val|test}/<class>/",
                    lambda o: load_folder_bundle(o.data_dir, image_size=o.image_size, augment=o.augment)),
        DatasetInfo("fsdd", "audio", "Free Spoken Digit Dataset fsdd.npz from --data-dir (real audio)",
                    lambda o: load_fsdd_bundle(o.data_dir)),
        DatasetInfo("synthetic1d", "audio", "synthetic 1-D flagged-channel task, variable lengths",
                    lambda o: synthetic_sequence_bundle()),
        DatasetInfo("synthetic3d", "volume", "synthetic 3-D flagged-channel task",
                    lambda o: synthetic_volume_bundle()),
    )
}  # fmt: skip


def default_data(task: str, data_dir: str | Path | None = None) -> str:
    """The data set a task uses when none is named: digits (image), FSDD when ``data_dir`` is given
    else the synthetic sequences (audio), the synthetic volumes (volume)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if task == "audio":
        return "fsdd" if data_dir is not None else "synthetic1d"
    return {"image": "digits", "volume": "synthetic3d"}[task]


def build_data(
    name: str,
    *,
    data_dir: str | Path | None = None,
    augment: bool = True,
    image_size: int = 32,
    train_limit: int | None = None,
    val_limit: int | None = None,
) -> DataBundle:
    """Load data set ``name`` (a key of :data:`DATASETS`), optionally cut to its first examples."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"data must be one of {sorted(DATASETS)}, got {name!r}")
    options = DataOptions(data_dir=Path(data_dir) if data_dir is not None else None, augment=augment, image_size=image_size)
    return limit_bundle(DATASETS[name].load(options), train_limit, val_limit)
