"""The timm-style sweep over every registered model, whatever family registered it.

Every model: the builder's signature, the parameter count against its spec table, forward and backward on a
tiny input (every parameter gets a gradient), the feature API (``forward_features``, ``forward_head``,
``features_only``, ``reset_classifier``), determinism under a fixed seed and a strict state-dict round trip.
Every family (a model class and a name with the digits removed) at ranks 1 and 3 through its smallest member.
``torch.compile`` on a small model. Models over 40M parameters run only under ``-m slow``, except their
parameter counts, which are checked on the meta device (no memory, no initialisation).
"""

from __future__ import annotations

import inspect
import re
from functools import cache

import pytest
import torch
import torch.nn as nn

from senet.models import ClassifierModel, FeatureListNet, create_model, list_models, load_weights
from senet.models.registry import get_builder

ALL_MODELS = list_models()
# Models over 40M parameters (the 101/152-layer rows, SENet-154, VGG-16) build and run only under -m slow: the
# CI budget is a few minutes on 2 cores, and the deeper rows share every code path with the 50-layer ones.
HUGE = 40_000_000
NUM_CLASSES = 5


@cache
def meta_model(name: str, spatial_dims: int = 2) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, spatial_dims=spatial_dims)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def is_huge(name: str) -> bool:
    return num_params(meta_model(name)) > HUGE


def sized(names: list[str]) -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if is_huge(name) else name for name in names]


def input_for(name: str, model: ClassifierModel, spatial_dims: int = 2, batch: int = 2) -> torch.Tensor:
    """A tiny input: 32 positions per axis, the least that every ImageNet model (total stride 32, ResNet-D's
    average-pooled shortcuts) accepts; 8 per axis for the CIFAR models (``*_cifar``) at rank 3."""
    size = 8 if (spatial_dims == 3 and name.endswith("_cifar")) else 32
    return torch.randn(batch, model.in_channels, *([size] * spatial_dims))


def family_of(name: str) -> tuple[str, str]:
    """(model class, name without digits): resnet18/34/50 are one family, seresnet20_cifar/32/... another."""
    return type(meta_model(name)).__name__, re.sub(r"\d+", "", name)


def smallest_members() -> dict[tuple[str, str], str]:
    members: dict[tuple[str, str], str] = {}
    for name in ALL_MODELS:
        family = family_of(name)
        if family not in members or num_params(meta_model(name)) < num_params(meta_model(members[family])):
            members[family] = name
    return members


FAMILIES = smallest_members()


# --- registry and builders ------------------------------------------------------------------------------


def test_registry_lists_every_model_once():
    assert ALL_MODELS == sorted(set(ALL_MODELS)) and len(ALL_MODELS) >= 40
    with pytest.raises(ValueError, match="unknown model 'resnet51'; valid names: .*resnet50"):
        create_model("resnet51")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_builder_signature(name):
    """Keyword-only, typed, documented, with the options that issue 5 names."""
    builder = get_builder(name)
    parameters = inspect.signature(builder).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())
    assert inspect.signature(builder).return_annotation is not inspect.Signature.empty
    assert {"spatial_dims", "in_channels", "num_classes", "attention", "reduction"} <= set(parameters)
    assert builder.__doc__ and builder.__doc__.strip()


# --- parameter counts against the spec tables ------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_param_count_matches_spec(name):
    model = meta_model(name)
    assert isinstance(model, ClassifierModel)
    assert num_params(model) == model.num_params_from_spec()


# --- forward, backward, feature API, determinism ---------------------------------------------------------


@pytest.mark.parametrize("name", sized(ALL_MODELS))
def test_forward_backward(name):
    model = create_model(name, num_classes=NUM_CLASSES).train()
    x = input_for(name, model)
    out = model(x)
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", sized(ALL_MODELS))
def test_feature_api(name):
    wrapper = create_model(name, num_classes=NUM_CLASSES, features_only=True)
    assert isinstance(wrapper, FeatureListNet)
    model = wrapper.model.eval()
    x = input_for(name, model)
    with torch.no_grad():
        features = wrapper(x)
        last = model.forward_features(x)
        logits = model(x)
        assert [f.shape[1] for f in features] == list(model.stage_channels)
        assert [f.shape[0] for f in features] == [2] * len(features)
        assert features[-1].shape == last.shape  # (a final norm, as in pre-activation nets, may follow)
        assert last.shape[:2] == (2, model.num_features) and last.ndim == x.ndim
        torch.testing.assert_close(model.forward_head(last), logits)
        pre_logits = model.forward_head(last, pre_logits=True)  # pooled features (VGG: after fc6/fc7)
        assert pre_logits.ndim == 2 and pre_logits.shape[0] == 2
        torch.testing.assert_close(model.fc(pre_logits), logits)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)
        model.reset_classifier(0)
        assert model(x).shape == pre_logits.shape
    assert num_params(model) == model.num_params_from_spec()  # the count follows the new classifier


@pytest.mark.parametrize("name", sized(ALL_MODELS))
def test_deterministic_and_round_trip(name):
    torch.manual_seed(0)
    first = create_model(name).eval()
    torch.manual_seed(0)
    second = create_model(name).eval()
    state = first.state_dict()
    assert all(torch.equal(state[k], v) for k, v in second.state_dict().items())
    x = input_for(name, first, batch=1)
    with torch.no_grad():
        expected = first(x)
        assert torch.equal(second(x), expected)
        for p in second.parameters():
            p.add_(1.0)
        assert not torch.equal(second(x), expected)
        load_weights(second, state)  # strict
        assert torch.equal(second(x), expected)


# --- every family at ranks 1 and 3 -----------------------------------------------------------------------


def _family_cases() -> list:
    cases = []
    for family, name in sorted(FAMILIES.items()):
        for spatial_dims in (1, 3):
            marks = [pytest.mark.slow] if is_huge(name) else []
            cases.append(pytest.param(name, spatial_dims, marks=marks, id=f"{name}-{spatial_dims}d"))
    return cases


@pytest.mark.parametrize(("name", "spatial_dims"), _family_cases())
def test_family_at_rank(name, spatial_dims):
    model = create_model(name, spatial_dims=spatial_dims, num_classes=NUM_CLASSES).train()
    assert num_params(model) == model.num_params_from_spec()
    x = input_for(name, model, spatial_dims)
    out = model(x)
    assert out.shape == (2, NUM_CLASSES)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    features = model.forward_intermediates(x)
    assert [f.ndim for f in features] == [spatial_dims + 2] * len(model.stage_channels)
    with pytest.raises(ValueError, match=f"with {spatial_dims} spatial dims"):
        model(torch.randn(2, model.in_channels, *([32] * (5 - spatial_dims))))


def test_families_cover_every_model():
    assert {family_of(name) for name in ALL_MODELS} == set(FAMILIES)
    assert len(FAMILIES) >= 10


# --- torch.compile ---------------------------------------------------------------------------------------


def test_compile_without_graph_breaks():
    """``fullgraph=True`` fails on any graph break; ``aot_eager`` traces forward and backward without the slow
    C++ code generation of inductor (which runs under ``-m slow``)."""
    torch._dynamo.reset()
    model = create_model("seresnet20_cifar", num_classes=NUM_CLASSES).train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 16, 16)
    out = compiled(x)
    out.sum().backward()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seresnet20_cifar", "seresnet18"])
def test_compile_inductor(name):
    torch._dynamo.reset()
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), rtol=1e-4, atol=1e-4)
