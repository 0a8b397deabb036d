"""What every peer format shares: the layouts a state dict cannot show, and the checks that guard them.

A ResNet state dict holds shapes, not strides or pooling. timm's ``seresnet50`` and ``legacy_seresnet50``
have the same keys and shapes after renaming, yet compute different functions: the first strides its 3x3
convolutions and pads its stem max pool (torchvision's "v1.5"), the second strides the first 1x1 and pools
with ``ceil_mode`` (the Caffe release). A :class:`Layout` records those facts; every conversion checks that
the senet model computes like the peer, and a mismatch is an error, never a silent load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

import torch
import torch.nn as nn

from senet.layers.checks import excitation_width
from senet.layers.se import SqueezeExcite
from senet.layers.nd import nd_layers
from senet.models.registry import builder_options, create_model
from senet.models.resnet import ResNet
from senet.models.specs import ArchSpec

__all__ = [
    "Style",
    "Layout",
    "PeerFormat",
    "layout_of",
    "expected_layout",
    "check_layout",
    "check_attention",
    "check_se_everywhere",
    "check_rank",
    "check_tensors",
    "resolve_model",
    "infer_options",
    "se_to_linear",
    "se_to_conv",
    "fill_num_batches_tracked",
    "check_peer_modules",
]

# "v1.5": torchvision / timm ``resnet.py``; "caffe": the original SENet release (Cadene, timm legacy_*, MONAI).
Style: TypeAlias = Literal["v1.5", "caffe"]

_SE_WEIGHT = (".se.fc1.weight", ".se.fc2.weight")
_CONVS = tuple(nd_layers(d).conv for d in (1, 2, 3))


@dataclass(frozen=True)
class Layout:
    """How a ResNet computes beyond its state dict.

    Args:
        stem_pool: the stem's max pool: ``"max"`` (padding 1) or ``"max_ceil"`` (no padding, ``ceil_mode``).
        stride_on: where a strided bottleneck strides, ``"3x3"`` or ``"1x1"`` (``"3x3"`` for basic blocks,
            whose first convolution is the 3x3 one).
        branch_act: a ReLU at the end of each residual branch, before SE (Cadene's basic block).
        strides: the stride of the stem convolution, then of each stage.
    """

    stem_pool: str
    stride_on: str
    branch_act: bool
    strides: tuple[int, ...]


def layout_of(spec: ArchSpec) -> Layout:
    """The layout a senet spec builds."""
    return Layout(
        stem_pool=spec.stem.pool,
        stride_on=spec.stride_on if spec.block == "bottleneck" else "3x3",
        branch_act=spec.branch_act,
        strides=(spec.stem.stride, *(stage.stride for stage in spec.stages)),
    )


def expected_layout(style: Style, spec: ArchSpec) -> Layout:
    """The layout of a peer network of ``style`` with the blocks of ``spec``.

    In the Caffe release the stride placement follows the block type: SE-ResNet bottlenecks (one group)
    stride their first 1x1 convolution; SE-ResNeXt and SENet-154 bottlenecks (grouped 3x3) their 3x3.
    Its basic blocks (SE-ResNet-18/34) end the branch with a ReLU.
    """
    imagenet = (2, 1, 2, 2, 2)
    if style == "v1.5":
        return Layout(stem_pool="max", stride_on="3x3", branch_act=False, strides=imagenet)
    one_group = spec.block == "bottleneck" and all(stage.groups == 1 for stage in spec.stages)
    return Layout(
        stem_pool="max_ceil",
        stride_on="1x1" if one_group else "3x3",
        branch_act=spec.block == "basic",
        strides=imagenet,
    )


def check_layout(model: ResNet, style: Style, peer: str) -> None:
    """ValueError listing every field in which ``model`` computes differently from a ``peer`` network of ``style``."""
    expected, actual = expected_layout(style, model.spec), layout_of(model.spec)
    if expected == actual:
        return
    fields = ", ".join(
        f"{name}: model {getattr(actual, name)!r}, {peer} {getattr(expected, name)!r}"
        for name in Layout.__dataclass_fields__
        if getattr(actual, name) != getattr(expected, name)
    )
    hint = "a senet legacy_* model" if style == "caffe" else "a senet model without the legacy_ prefix"
    raise ValueError(
        f"the senet model ({model.spec.name}) computes differently from the {peer} network although the "
        f"shapes may agree ({fields}); use {hint} of the same depth"
    )


def check_attention(model: ResNet, peer: str) -> None:
    """The peers have only the standard SE block (avg squeeze, ReLU, sigmoid, biases) before the addition."""
    if model.attention is None:
        return
    if model.attention != "se" or model.integration != "standard":
        raise ValueError(
            f"{peer} networks have SE blocks with integration='standard'; the senet model has "
            f"attention={model.attention!r}, integration={model.integration!r}"
        )
    for name, module in model.named_modules():
        if name.endswith(".se") and isinstance(module, SqueezeExcite):
            plain = (
                module.squeeze == "avg"
                and module.gate_name == "sigmoid"
                and type(module.act) is nn.ReLU
                and module.fc1.bias is not None
            )
            if not plain:
                raise ValueError(
                    f"{peer} SE blocks squeeze by average with a ReLU, a sigmoid gate and biases; senet's "
                    f"{name} is {module!r}"
                )


def check_se_everywhere(model: ResNet, peer: str) -> None:
    """The Caffe-release networks (timm legacy_*, MONAI) have an SE block in every residual unit."""
    stages = len(model.spec.stages)
    if model.attention != "se" or (model.se_stages is not None and sorted(model.se_stages) != list(range(stages))):
        raise ValueError(
            f"{peer} networks of the Caffe layout have an SE block in every unit; the senet model has "
            f"attention={model.attention!r}, se_stages={model.se_stages!r}"
        )


def check_rank(model: ResNet, ranks: tuple[int, ...], peer: str) -> None:
    if model.spatial_dims not in ranks:
        raise ValueError(f"{peer} networks have spatial_dims in {ranks}; the senet model has {model.spatial_dims}")


def check_tensors(state: object, name: str) -> Mapping[str, torch.Tensor]:
    """``state`` if it maps str keys to tensors; a TypeError naming ``name`` otherwise."""
    if not isinstance(state, Mapping):
        raise TypeError(f"{name} must be a state dict (a mapping of str to torch.Tensor), got {type(state).__name__}")
    bad = sorted(str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if bad:
        raise TypeError(f"{name} must map str keys to torch.Tensor values; these entries do not: {bad[:10]}")
    return state


def resolve_model(model: object, state: Mapping[str, torch.Tensor]) -> ResNet:
    """A senet ResNet-family model: ``model`` itself, or the registered name built with the options that
    ``state`` (a senet-keyed state dict) implies (see :func:`infer_options`)."""
    if isinstance(model, str):
        model = create_model(model, **infer_options(model, state))
    if not isinstance(model, ResNet):
        raise TypeError(
            "model must be the name of a senet ResNet-family model (resnet50, legacy_seresnet50, ...) or such a "
            f"model (senet.models.resnet.ResNet), got {type(model).__name__}"
        )
    return model


def infer_options(name: str, state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """The builder options of senet model ``name`` that a senet-keyed ``state`` implies.

    ``spatial_dims`` and ``in_channels`` come from the stem convolution, ``num_classes`` from ``fc`` (0
    without it). SE hidden widths are read from the checkpoint, never recomputed: if the builder's
    defaults (``reduction=16`` and its ``se_divisor``) do not give them, the per-stage ratio
    ``r = C // h`` with the paper's floor (``se_divisor=1``) is passed when it reproduces every width
    (MONAI's networks built with another ``reduction``, e.g. ``r=2``); otherwise the defaults stay and the
    strict check names the mismatching keys.
    """
    options: dict[str, object] = {}
    accepted = builder_options(name)
    stem = state.get("conv1.weight", state.get("conv1.0.weight"))
    if stem is not None and stem.ndim in (3, 4, 5):
        options.update(spatial_dims=stem.ndim - 2, in_channels=int(stem.shape[1]))
    if "fc.weight" in state:
        options["num_classes"] = int(state["fc.weight"].shape[0])
    elif "fc.bias" not in state:
        options["num_classes"] = 0
    widths = _se_widths(state)  # stage index -> [(C, h), ...]
    if widths and {"reduction", "se_divisor"} <= set(accepted):
        divisor = accepted["se_divisor"].default
        default = all(excitation_width(c, 16, None, divisor) == h for pairs in widths.values() for c, h in pairs)
        ratios = _floor_ratios(widths)
        if not default and ratios is not None:
            num_stages = max(widths) + 1
            per_stage = tuple(ratios.get(i, 16) for i in range(num_stages))
            options.update(se_divisor=1, reduction=per_stage[0] if len(set(per_stage)) == 1 else per_stage)
    return {k: v for k, v in options.items() if k in accepted}


def _se_widths(state: Mapping[str, torch.Tensor]) -> dict[int, list[tuple[int, int]]]:
    widths: dict[int, list[tuple[int, int]]] = {}
    for key, value in state.items():
        if key.startswith("layer") and key.endswith(".se.fc1.weight") and value.ndim >= 2:
            stage = int(key[len("layer") :].split(".")[0]) - 1
            widths.setdefault(stage, []).append((int(value.shape[1]), int(value.shape[0])))
    return widths


def _floor_ratios(widths: dict[int, list[tuple[int, int]]]) -> dict[int, int] | None:
    """Per stage the ratio r with ``C // r == h`` for every block, or None if some stage has none."""
    ratios = {}
    for stage, pairs in widths.items():
        c0, h0 = pairs[0]
        if h0 < 1 or h0 > c0:
            return None
        r = c0 // h0
        if any(c // r != h for c, h in pairs):
            return None
        ratios[stage] = r
    return ratios


def se_to_linear(state: dict[str, torch.Tensor], peer: str) -> dict[str, torch.Tensor]:
    """Reshape the SE weights of a senet-keyed ``state`` from 1x1 convolutions ``(h, C, 1, ..., 1)`` to
    ``nn.Linear`` ``(h, C)``; any other non-matrix shape is a ValueError naming the key."""
    out = dict(state)
    for key, value in state.items():
        if key.endswith(_SE_WEIGHT) and value.ndim != 2:
            if value.ndim < 2 or any(size != 1 for size in value.shape[2:]):
                raise ValueError(
                    f"{peer} SE weight {key!r} must be a 1x1 convolution (h, C, 1, ..., 1) or a matrix (h, C), "
                    f"got shape {tuple(value.shape)}"
                )
            out[key] = value.reshape(value.shape[:2])  # (h, C, 1, 1) -> (h, C)
    return out


def se_to_conv(state: dict[str, torch.Tensor], spatial_dims: int) -> dict[str, torch.Tensor]:
    """The inverse of :func:`se_to_linear`: ``(h, C) -> (h, C, 1, ..., 1)`` with ``spatial_dims`` ones."""
    out = dict(state)
    for key, value in state.items():
        if key.endswith(_SE_WEIGHT):
            out[key] = value.reshape(*value.shape, *([1] * spatial_dims))
    return out


def fill_num_batches_tracked(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add a zero ``num_batches_tracked`` beside every BN ``running_mean`` that lacks one.

    Checkpoints written before torch 0.4.1 (Cadene's SENet weights, the first torchvision ones) have no
    counter; torch itself fills in 0 when it loads them, and the counter only matters for
    ``momentum=None``. Present counters are kept as they are.
    """
    out = dict(state)
    for key in state:
        if key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out


def check_peer_modules(
    module: nn.Module, allowed: frozenset[str], peer: str, extra: Callable[[str, nn.Module], str | None]
) -> None:
    """ValueError naming every submodule of a peer network that senet's ResNet cannot reproduce.

    ``allowed`` holds the class names a convertible network is made of; ``extra(name, module)`` returns a
    reason for modules of an allowed class configured differently (a residual SE, a dilated convolution).
    """
    problems = []
    for name, sub in module.named_modules():
        cls = type(sub).__name__
        if cls not in allowed:
            problems.append(f"{name or '<root>'} ({cls})")
            continue
        if isinstance(sub, _CONVS):
            same = tuple(k // 2 for k in sub.kernel_size)
            if any(d != 1 for d in sub.dilation) or isinstance(sub.padding, str) or tuple(sub.padding) != same:
                problems.append(f"{name} (dilation {sub.dilation}, padding {sub.padding})")
        reason = extra(name, sub)
        if reason:
            problems.append(f"{name} ({reason})")
    if problems:
        raise ValueError(f"the {peer} network has modules that senet's ResNet cannot reproduce: {problems}")


@dataclass(frozen=True)
class PeerFormat:
    """One peer's state-dict format.

    Args:
        name: ``"timm"``, ``"torchvision"`` or ``"monai"``.
        to_senet: peer state dict -> (senet-keyed state dict, the style the peer network computes in).
        from_senet: (senet state dict, the senet model it belongs to) -> peer state dict; raises a
            ValueError when no network of the peer computes like that model.
        check_module: checks a peer network instance for what its state dict cannot show.
    """

    name: str
    to_senet: Callable[[Mapping[str, torch.Tensor]], tuple[dict[str, torch.Tensor], Style]]
    from_senet: Callable[[Mapping[str, torch.Tensor], ResNet], dict[str, torch.Tensor]]
    check_module: Callable[[nn.Module], None]
