"""Image data from local folders: CIFAR-10/100 (torchvision's layout) and any ImageFolder tree.

Nothing is downloaded (``download=False``); a missing folder is a clear error naming what was expected.
Training images get the standard CIFAR augmentation: random crop with padding (1/8 of the side,
4 pixels at 32x32) and horizontal flip; every split is normalised with the data set's mean and std.
"""

from __future__ import annotations

from pathlib import Path

from senet.data.bundle import DataBundle

__all__ = ["load_cifar_bundle", "load_folder_bundle", "CIFAR_FILES", "CIFAR_MEAN", "CIFAR_STD"]

# Files that torchvision's CIFAR10 / CIFAR100 classes read, under <data-dir>/<folder>/.
CIFAR_FILES: dict[str, tuple[str, tuple[str, ...], int]] = {
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"), 10),
    "cifar100": ("cifar-100-python", ("train", "test", "meta"), 100),
}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JPEG_NOTE = "lossy JPEG copy of CIFAR-10 (quality 75): not comparable with published CIFAR-10 numbers"


def _transforms(size: int, mean: tuple[float, ...], std: tuple[float, ...], *, augment: bool, resize: bool):
    from torchvision import transforms as T

    head = [T.Resize(size), T.CenterCrop(size)] if resize else []
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    train = head + ([T.RandomCrop(size, padding=max(1, size // 8)), T.RandomHorizontalFlip()] if augment else [])
    return T.Compose(train + tail), T.Compose(head + tail)


def _cifar_root(name: str, data_dir: str | Path | None) -> Path:
    folder, files, _ = CIFAR_FILES[name]
    if data_dir is None:
        raise ValueError(f"data {name!r} needs --data-dir: the folder holding {folder}/")
    root = Path(data_dir)
    if root.name == folder:  # the user pointed at the inner folder
        root = root.parent
    missing = [f for f in files if not (root / folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{name} not found under {root}: expected {folder}/{{{','.join(files)}}} "
            f"(torchvision's python layout; missing {', '.join(missing)}); nothing is downloaded"
        )
    return root


def load_cifar_bundle(name: str, data_dir: str | Path | None, *, augment: bool = True) -> DataBundle:
    """CIFAR-10 or CIFAR-100 through torchvision's dataset classes, the official train/test split."""
    from torchvision.datasets import CIFAR10, CIFAR100

    root = _cifar_root(name, data_dir)
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    train_tf, val_tf = _transforms(32, CIFAR_MEAN, CIFAR_STD, augment=augment, resize=False)
    try:
        train = cls(root, train=True, transform=train_tf, download=False)
        val = cls(root, train=False, transform=val_tf, download=False)
    except RuntimeError as err:  # torchvision's md5 check failed
        raise ValueError(f"{name} files under {root} are corrupted ({err})") from None
    return DataBundle(
        name=name,
        train=train,
        val=val,
        num_classes=CIFAR_FILES[name][2],
        input_shape=(3, 32, 32),
        note=f"{name} (torchvision files), official split",
        in_memory=False,
    )


def _split_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"image folder {root} has no {' or '.join(n + '/' for n in names)} sub-folder")


def load_folder_bundle(
    data_dir: str | Path | None, *, image_size: int = 32, augment: bool = True, cifar_jpeg: bool = False
) -> DataBundle:
    """Any ``torchvision.datasets.ImageFolder`` tree ``<data-dir>/train/<class>/*`` plus ``val/`` or ``test/``.

    With ``cifar_jpeg`` the folder is the shared JPEG copy of CIFAR-10: CIFAR statistics, 32x32, no
    resizing, and every number from it carries the note "lossy JPEG copy".
    """
    from torchvision.datasets import ImageFolder

    if data_dir is None:
        raise ValueError("image-folder data needs --data-dir: a folder with train/ and val/ (or test/) class folders")
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    train_dir, val_dir = _split_dir(root, ("train",)), _split_dir(root, ("val", "test"))
    mean, std = (CIFAR_MEAN, CIFAR_STD) if cifar_jpeg else (IMAGENET_MEAN, IMAGENET_STD)
    train_tf, val_tf = _transforms(image_size, mean, std, augment=augment, resize=not cifar_jpeg)
    try:
        train = ImageFolder(train_dir, transform=train_tf)
        val = ImageFolder(val_dir, transform=val_tf)
    except FileNotFoundError as err:  # no class folders or no images
        raise FileNotFoundError(f"{root}: {err}") from None
    if train.classes != val.classes:
        raise ValueError(f"{train_dir} and {val_dir} have different class folders: {train.classes} vs {val.classes}")
    return DataBundle(
        name="cifar10-jpeg" if cifar_jpeg else "folder",
        train=train,
        val=val,
        num_classes=len(train.classes),
        input_shape=(3, image_size, image_size),
        note=JPEG_NOTE if cifar_jpeg else f"image folder {root}",
        in_memory=False,
    )
