"""Where an SE block goes in a residual unit, and which stages carry one (SENet paper, Fig. 5 / Table 14).

A residual unit computes ``out = act(branch(x) + shortcut(x))``. The paper's integration strategies
(``integration=``, one of :data:`INTEGRATIONS`) put the SE block ``SE`` at:

- ``"standard"``: on the residual branch, before the addition (the SE-ResNet module, Fig. 3):
  ``out = act(SE(branch(x)) + shortcut(x))``.
- ``"pre"``: before the residual unit, on the branch input ("SE-PRE"):
  ``out = act(branch(SE(x)) + shortcut(x))``; the shortcut keeps the un-gated ``x``.
- ``"post"``: after the addition ("SE-POST"); with ``placement="after_act"`` (the paper's, default)
  after the unit's final activation, ``out = SE(act(branch(x) + shortcut(x)))``; with
  ``placement="before_act"`` between the addition and the activation, ``out = act(SE(branch(x) + shortcut(x)))``.
- ``"identity"``: on the identity branch, in parallel with the residual branch ("SE-Identity"):
  ``out = act(branch(x) + SE(shortcut(x)))``.
- ``"inside"``: inside the residual branch, after its 3x3 convolution (the "SE 3x3" ablation, Table 14,
  where the block sees the bottleneck width ``C/4`` rather than the unit's output width ``C``). With
  ``placement="after_act"`` (default) it follows the 3x3 conv's BN and activation, with ``"before_act"``
  it sits between the BN and the activation. In a basic block (two 3x3 convs) it follows the first.

``placement`` (one of :data:`PLACEMENTS`) only matters where the block position has an activation next
to it (``"post"`` and ``"inside"`` in post-activation units); elsewhere a family accepts only the default
``"after_act"`` and raises a ValueError naming the positions that have a choice. Note (errata 3): SE before and after a ReLU are different functions in
general, because the gates are computed from the SE block's own input.

Per-stage options: ``se_stages`` (0-based stage indices that carry SE, e.g. ``(3,)`` for only the last of
four stages; ``None`` for all) and ``reduction`` (the ratio r, one int for all stages or one per stage).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import torch.nn as nn

from senet.layers.checks import check_choice, check_positive_int
from senet.layers.registry import create_attention, get_attention

__all__ = [
    "INTEGRATIONS",
    "PLACEMENTS",
    "Integration",
    "Placement",
    "check_integration",
    "check_placement",
    "check_attention",
    "stage_reductions",
    "check_se_stages",
    "stage_attention",
    "BlockAttention",
    "block_attention",
]

Integration: TypeAlias = Literal["standard", "pre", "post", "identity", "inside"]
Placement: TypeAlias = Literal["after_act", "before_act"]

INTEGRATIONS: tuple[str, ...] = ("standard", "pre", "post", "identity", "inside")
PLACEMENTS: tuple[str, ...] = ("after_act", "before_act")


def check_integration(value: object) -> str:
    """``value`` if it is one of :data:`INTEGRATIONS`; otherwise a ValueError listing them."""
    return check_choice("integration", value, INTEGRATIONS)


def check_placement(value: object) -> str:
    """``value`` if it is one of :data:`PLACEMENTS`; otherwise a ValueError listing them."""
    return check_choice("placement", value, PLACEMENTS)


def check_attention(attention: object) -> str | None:
    """``attention`` if it is ``None`` (plain network) or a key of ``senet.layers.ATTENTION_LAYERS``."""
    if attention is None:
        return None
    get_attention(attention)  # ValueError listing the registered names
    return attention


def stage_reductions(reduction: int | tuple[int, ...], num_stages: int) -> tuple[int, ...]:
    """The reduction ratio r of each of ``num_stages`` stages: one int for all, or one int per stage."""
    check_positive_int("num_stages", num_stages)
    if isinstance(reduction, (list, tuple)):
        if len(reduction) != num_stages:
            raise ValueError(
                f"reduction must be one int or a tuple of {num_stages} ints (one per stage), "
                f"got {len(reduction)} values {tuple(reduction)!r}"
            )
        return tuple(check_positive_int(f"reduction[{i}]", r) for i, r in enumerate(reduction))
    if isinstance(reduction, bool) or not isinstance(reduction, int):
        raise TypeError(
            f"reduction must be an int or a tuple of {num_stages} ints, got {type(reduction).__name__} {reduction!r}"
        )
    return (check_positive_int("reduction", reduction),) * num_stages


def check_se_stages(se_stages: Iterable[int] | None, num_stages: int) -> tuple[int, ...]:
    """The sorted 0-based indices of the stages that carry SE (``None``: all ``num_stages``).

    Indices must be ints in ``[0, num_stages)`` without repeats; an empty tuple means no stage has SE.
    """
    check_positive_int("num_stages", num_stages)
    if se_stages is None:
        return tuple(range(num_stages))
    if isinstance(se_stages, (str, bytes)) or not isinstance(se_stages, Iterable):
        raise TypeError(f"se_stages must be a tuple of stage indices or None, got {type(se_stages).__name__}")
    stages = tuple(se_stages)
    for index in stages:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"se_stages must hold ints, got {type(index).__name__} {index!r} in {stages!r}")
        if not 0 <= index < num_stages:
            raise ValueError(f"se_stages must hold stage indices in [0, {num_stages - 1}], got {index} in {stages!r}")
    if len(set(stages)) != len(stages):
        raise ValueError(f"se_stages must not repeat a stage, got {stages!r}")
    return tuple(sorted(stages))


def stage_attention(attention: str | None, se_stages: Iterable[int] | None, num_stages: int) -> tuple[str | None, ...]:
    """The attention layer name of each stage: ``attention`` for the stages in ``se_stages``, else ``None``."""
    attention = check_attention(attention)
    chosen = check_se_stages(se_stages, num_stages)
    return tuple(attention if i in chosen else None for i in range(num_stages))


@dataclass(frozen=True)
class BlockAttention:
    """The attention of one residual unit: which layer, with which ratio r, and where it goes.

    ``divisor`` is the hidden-width rounding of ``SqueezeExcite`` (1: the paper's floor ``C // r``;
    8: timm's rounding, for parameter parity with timm's ``seresnet*``).
    """

    name: str
    reduction: int
    integration: Integration = "standard"
    placement: Placement = "after_act"
    divisor: int = 1

    def __post_init__(self) -> None:
        get_attention(self.name)
        check_positive_int("reduction", self.reduction)
        check_integration(self.integration)
        check_placement(self.placement)
        check_positive_int("divisor", self.divisor)

    def channels_at(self, *, in_channels: int, inner_channels: int, out_channels: int) -> int:
        """The channels the layer sees at its position: the unit's input for ``"pre"``, the inner (3x3 conv)
        width for ``"inside"``, the unit's output for ``"standard"``, ``"post"`` and ``"identity"``."""
        return {"pre": in_channels, "inside": inner_channels}.get(self.integration, out_channels)

    def build(self, channels: int, spatial_dims: int) -> nn.Module:
        """The attention layer for ``channels`` channels (through ``senet.layers.create_attention``)."""
        return create_attention(
            self.name, channels, spatial_dims=spatial_dims, reduction=self.reduction, divisor=self.divisor
        )


def block_attention(
    attention: str | None,
    *,
    num_stages: int,
    reduction: int | tuple[int, ...] = 16,
    se_stages: Iterable[int] | None = None,
    integration: str = "standard",
    placement: str = "after_act",
    divisor: int = 1,
) -> tuple[BlockAttention | None, ...]:
    """One :class:`BlockAttention` per stage (``None`` for stages without attention, or all with ``attention=None``).

    Validates every option with a clear error, also those that a plain network ignores.
    """
    names = stage_attention(attention, se_stages, num_stages)
    reductions = stage_reductions(reduction, num_stages)
    check_integration(integration)
    check_placement(placement)
    check_positive_int("divisor", divisor)
    return tuple(
        None if name is None else BlockAttention(name, r, integration, placement, divisor)  # type: ignore[arg-type]
        for name, r in zip(names, reductions)
    )
