"""What every senet classifier shares: the timm-style API and input checks.

A family subclasses :class:`ClassifierModel` and provides ``forward_stem`` and ``stage_modules``;
its classifier is the attribute ``fc`` (``nn.Linear``, or ``nn.Identity`` with ``num_classes=0``)
applied after global average pooling over every spatial dimension.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
import torch.nn as nn

from senet.layers.checks import check_input

__all__ = ["ClassifierModel", "FeatureListNet"]


class ClassifierModel(nn.Module, metaclass=ABCMeta):
    """Base class: stem -> stages -> global average pool -> dropout -> ``fc``.

    Subclasses set ``spatial_dims``, ``in_channels``, ``num_features`` (channels of the last
    stage), ``stage_channels`` (channels of each stage's output), ``drop_rate``, ``fc``, and
    implement :meth:`forward_stem` and :meth:`stage_modules`.
    """

    spatial_dims: int
    in_channels: int
    num_classes: int
    num_features: int
    stage_channels: tuple[int, ...]
    drop_rate: float = 0.0
    fc: nn.Module

    @abstractmethod
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, *S) -> (N, C0, *S0)``: the stem, before the first stage."""

    @abstractmethod
    def stage_modules(self) -> list[nn.Module]:
        """The stages in order (each maps the previous stage's output to its own)."""

    def check_input(self, x: torch.Tensor) -> None:
        check_input(x, self.in_channels, ranks=(self.spatial_dims,))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, *S) -> (N, num_features, *S')``: the last feature map."""
        self.check_input(x)
        x = self.forward_stem(x)
        for stage in self.stage_modules():
            x = stage(x)
        return x

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, first to last (for detection and segmentation heads)."""
        self.check_input(x)
        x = self.forward_stem(x)
        features = []
        for stage in self.stage_modules():
            x = stage(x)
            features.append(x)
        return features

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(N, num_features, *S') -> (N, num_classes)`` (or the pooled features with ``pre_logits``)."""
        x = x.mean(dim=tuple(range(2, x.ndim)))  # (N, C, *S') -> (N, C)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` by a fresh classifier for ``num_classes`` (0 removes it)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class FeatureListNet(nn.Module):
    """Wraps a :class:`ClassifierModel` to return the list of every stage's output (timm's ``features_only``)."""

    def __init__(self, model: ClassifierModel) -> None:
        super().__init__()
        if not isinstance(model, ClassifierModel):
            raise TypeError(f"features_only needs a ClassifierModel, got {type(model).__name__}")
        self.model = model
        self.feature_channels = model.stage_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x)
