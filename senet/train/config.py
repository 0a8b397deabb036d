"""The typed configuration of one training run, filled in by the command line (or by Python code).

Checkpoints store it as plain data (``to_dict``), so a run can be inspected and resumed without pickles.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from senet.layers.checks import check_choice

__all__ = ["ModelSpec", "TrainConfig", "OPTIMIZERS", "SCHEDULES", "DEVICES"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: the registry ``name``, the builder ``options`` that were
    given (others keep the builder's defaults; ``attention: None`` means the plain network), and the SE
    options applied after building (``squeeze`` and ``gate`` of every SqueezeExcite; ``None`` keeps them)."""

    name: str
    options: dict[str, object] = field(default_factory=dict)
    squeeze: str | None = None
    gate: str | None = None

    def to_dict(self) -> dict[str, object]:
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()}
        return {"name": self.name, "options": options, "squeeze": self.squeeze, "gate": self.gate}

    @classmethod
    def from_dict(cls, data: object) -> ModelSpec:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("options"), dict):
            raise ValueError(f"not a senet model spec: {data!r}")
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in data["options"].items()}
        return cls(name=data["name"], options=options, squeeze=data.get("squeeze"), gate=data.get("gate"))


@dataclass(frozen=True)
class TrainConfig:
    """One training run (SENet paper recipe at small scale: SGD, momentum 0.9, cosine or step schedule).

    ``batch_size`` is the global batch: under ``torchrun`` with R processes each rank takes
    ``batch_size // R``. ``train_limit``/``val_limit`` cut the splits to their first examples (quick runs).
    ``amp`` and ``channels_last`` take effect on CUDA only.
    """

    model: ModelSpec
    out: Path
    data: str = "digits"
    data_dir: Path | None = None
    image_size: int = 32
    augment: bool = True
    train_limit: int | None = None
    val_limit: int | None = None
    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_size: int = 30  # epochs between decays of the step schedule
    gamma: float = 0.1  # the step schedule's decay factor
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    workers: int | None = None  # None: 0 for in-memory data, else min(4, cpu count)
    resume: bool = False
    progress: bool = True
    verbose: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("device", self.device, DEVICES)
        for name in ("epochs", "batch_size", "step_size", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1 or not 0 < self.gamma <= 1:
            raise ValueError(
                f"need weight_decay >= 0, momentum in [0, 1), gamma in (0, 1]; got {self.weight_decay}, "
                f"{self.momentum}, {self.gamma}"
            )
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 0):
            raise ValueError(f"workers must be an int >= 0 or None, got {self.workers!r}")

    def to_dict(self) -> dict[str, object]:
        """Plain data (str, int, float, bool, None, lists, dicts) for checkpoints and results.json."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["model"] = self.model.to_dict()
        data["out"] = str(self.out)
        data["data_dir"] = None if self.data_dir is None else str(self.data_dir)
        return data

