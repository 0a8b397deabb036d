"""``convert_state_dict`` (peer -> senet) and ``export_state_dict`` (senet -> peer) for the ResNet family."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from senet.interop.common import PeerFormat, check_attention, check_layout, check_tensors, resolve_model
from senet.interop.monai import MONAI
from senet.interop.timm import TIMM
from senet.interop.torchvision import TORCHVISION
from senet.models.registry import check_state_dict
from senet.models.resnet import ResNet

__all__ = ["FORMATS", "convert_state_dict", "export_state_dict", "convert_and_check"]

FORMATS: dict[str, PeerFormat] = {fmt.name: fmt for fmt in (TIMM, TORCHVISION, MONAI)}


def _format(name: object, argument: str) -> PeerFormat:
    if not isinstance(name, str) or name not in FORMATS:
        raise ValueError(f"{argument} must be one of {sorted(FORMATS)}, got {name!r}")
    return FORMATS[name]


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor] | nn.Module, *, source: str, model: str | ResNet | None = None
) -> dict[str, torch.Tensor]:
    """Convert a timm, torchvision or MONAI ResNet-family state dict into senet's keys and shapes.

    Keys are renamed and timm's 1x1-convolution SE weights ``(h, C, 1, 1)`` reshaped to senet's ``(h, C)``;
    the SE hidden widths h stay those of the checkpoint. BN running statistics and ``num_batches_tracked``
    are kept; a missing counter (pre-0.4.1 checkpoints such as Cadene's) becomes 0, as torch does. A key
    that is not part of the peer's ResNet layout is a ValueError listing it.

    Args:
        state_dict: the peer's state dict, or the peer network itself; a network is also checked for what
            its state dict cannot show (MONAI's ``ResidualSELayer``, a non-sigmoid gate, dilation).
        source: ``"timm"`` (``resnet.py`` models and the ``legacy_*`` SENets), ``"torchvision"`` or ``"monai"``.
        model: the senet model the weights are meant for, by registered name (built with the
            ``spatial_dims``, ``in_channels``, ``num_classes`` and SE widths the checkpoint implies, see
            :func:`senet.interop.common.infer_options`) or as an instance. When given, the conversion also
            checks that the model computes like the peer network (stride placement, stem pooling, the SE
            block) and that the result loads strictly (every key present, none extra, every shape equal),
            raising a ValueError otherwise. Without it, only the renaming is done: a timm ``legacy_seresnet50``
            state dict also *loads* into senet's ``seresnet50``, which strides elsewhere and computes
            something else, so pass ``model`` unless you check the architecture yourself.

    Returns:
        The senet state dict (tensors may share storage with ``state_dict``'s).

    Mapping of peer networks onto senet models: timm ``X`` -> senet ``X`` (same names, legacy included);
    torchvision ``X`` -> senet ``X``; MONAI ``SEResNet50/101/152`` -> ``legacy_seresnet50/101/152``,
    ``SEResNext50/101`` -> ``legacy_seresnext50_32x4d``/``legacy_seresnext101_32x4d``, ``SENet154`` ->
    ``legacy_senet154``.
    """
    state, _ = convert_and_check(state_dict, source=source, model=model)
    return state


def convert_and_check(
    state_dict: Mapping[str, torch.Tensor] | nn.Module, *, source: str, model: str | ResNet | None
) -> tuple[dict[str, torch.Tensor], ResNet | None]:
    """:func:`convert_state_dict`, also returning the senet model it checked against (None without ``model``)."""
    fmt = _format(source, "source")
    if isinstance(state_dict, nn.Module):
        fmt.check_module(state_dict)
        state_dict = state_dict.state_dict()
    state, style = fmt.to_senet(check_tensors(state_dict, "state_dict"))
    if model is None:
        return state, None
    net = resolve_model(model, state)
    check_state_dict(net, state)
    check_attention(net, source)
    check_layout(net, style, f"{source} ({'Caffe layout' if style == 'caffe' else 'torchvision v1.5 layout'})")
    return state, net


def export_state_dict(
    model_or_state_dict: ResNet | Mapping[str, torch.Tensor], *, target: str, model: str | ResNet | None = None
) -> dict[str, torch.Tensor]:
    """Convert a senet ResNet-family model's weights into the state dict of the matching timm, torchvision or
    MONAI network, the inverse of :func:`convert_state_dict`.

    Args:
        model_or_state_dict: a senet model (its ``state_dict()`` is exported), or a senet state dict.
        target: ``"timm"``, ``"torchvision"`` or ``"monai"``.
        model: only with a state dict, and then required: the senet model it belongs to, by registered name
            or as an instance. A state dict cannot show how its network computes (``seresnet50`` and
            ``legacy_seresnet50`` have the same keys and shapes, but map to different timm layouts).

    The state dict is first checked strictly against the model. The target must have a network that
    computes like the model, or a ValueError says why not: timm's ``resnet.py`` layout for senet models
    without the ``legacy_`` prefix, timm's ``legacy_*`` layout for the ``legacy_*`` ones; torchvision for plain
    2-D ResNets/ResNeXts with a 7x7 stem; MONAI for the ``legacy_*`` bottleneck models at any rank. The peer
    network must be built with the same SE widths (timm ``seresnet*``: rounded to 8, MONAI: its
    ``reduction``) and number of classes.
    """
    fmt = _format(target, "target")
    if isinstance(model_or_state_dict, ResNet):
        if model is not None:
            raise TypeError("export_state_dict: pass model= only with a state dict, not with a senet model")
        net, state = model_or_state_dict, model_or_state_dict.state_dict()
    else:
        state = check_tensors(model_or_state_dict, "model_or_state_dict")
        if model is None:
            raise ValueError(
                "export_state_dict needs model= (a senet model name or instance) with a state dict: the keys do not "
                "show how the network computes (e.g. seresnet50 and legacy_seresnet50 share them)"
            )
        net = resolve_model(model, state)
        check_state_dict(net, state)
    return fmt.from_senet(dict(state), net)
