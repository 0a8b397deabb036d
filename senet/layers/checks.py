"""Argument and input checks shared by every attention layer.

Each check raises at the public boundary with a message that names the argument,
what was expected and what was given, so that bad input never reaches torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = [
    "check_positive_int",
    "check_choice",
    "make_divisible",
    "excitation_width",
    "check_input",
    "check_mask",
]


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; otherwise a ValueError listing them."""
    valid = sorted(choices)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {value!r}")
    return value


def make_divisible(value: float, divisor: int, min_value: int | None = None, round_limit: float = 0.0) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``, default ``divisor``).

    This is timm's ``make_divisible``: with ``round_limit=0.9`` a result more than 10% below
    ``value`` is bumped up by one ``divisor`` (MobileNet's rule); ``timm.layers.SEModule``
    uses ``round_limit=0``.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def excitation_width(
    channels: int,
    reduction: int,
    hidden_channels: int | None = None,
    divisor: int = 1,
    min_channels: int | None = None,
) -> int:
    """Validate the excitation arguments and return the hidden width ``h`` (the spec's C/r).

    One function for every layer with a bottleneck (``SqueezeExcite``, ``LocalChannelGate``,
    the channel half of CBAM, ...), so the rules cannot drift apart:

    - ``hidden_channels`` given: it is ``h``, and ``reduction`` is not checked against ``channels``.
    - ``divisor == 1`` (default): ``h = channels // reduction``, the paper's floor, at least ``min_channels or 1``.
    - ``divisor > 1``: ``h = make_divisible(channels / reduction, divisor, min_channels)``, timm's
      ``SEModule`` rule (``divisor=8`` gives 8 hidden units for C=64, r=16, where the paper has 4).
    """
    check_positive_int("channels", channels)
    check_positive_int("divisor", divisor)
    if min_channels is not None:
        check_positive_int("min_channels", min_channels)
    if hidden_channels is not None:
        return check_positive_int("hidden_channels", hidden_channels)
    check_positive_int("reduction", reduction)
    if reduction > channels:
        raise ValueError(f"reduction must be in [1, channels={channels}], got {reduction}")
    if divisor == 1:
        return max(min_channels or 1, channels // reduction)
    return make_divisible(channels / reduction, divisor, min_channels)


def check_input(x: object, channels: int, *, name: str = "x", ranks: tuple[int, ...] = (1, 2, 3)) -> None:
    """Check that ``x`` is a floating tensor of shape ``(N, channels, *spatial)`` with ``len(spatial) in ranks``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim - 2 not in ranks:
        expected = ", ".join(str(r + 2) for r in ranks)
        raise ValueError(
            f"{name} must have shape (N, C, *spatial) with {', '.join(map(str, ranks))} spatial dims "
            f"(rank {expected}), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have channels={channels} in dim 1, got shape {tuple(x.shape)}")


def check_mask(mask: object, x: torch.Tensor) -> torch.Tensor:
    """Check a validity mask of shape ``(N, *spatial)`` for ``x``; True marks a valid position."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of dtype torch.bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool, got {mask.dtype}")
    expected = (x.shape[0], *x.shape[2:])
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask must have shape (N, *spatial) = {expected}, got {tuple(mask.shape)}")
    return mask
