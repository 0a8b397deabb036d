"""senet's ResNet units use the fused SE tail: same values and gradients, fewer saved bytes, and the
plain path wherever the SE block or the norm is observed by hooks."""

from __future__ import annotations

import pytest
import torch

import senet.models.blocks as blocks
from senet.models import create_model


def _units(model):
    return [m for m in model.modules() if hasattr(m, "fused_tail")]


def _set_fused(model, flag: bool) -> None:
    for unit in _units(model):
        unit.fused_tail = flag


def _saved_bytes(model, x) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    return sum(storages.values())


@pytest.mark.parametrize("name", ["seresnet18", "seresnet50"])
def test_fused_tail_matches_plain_formula_values_and_gradients(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).double()  # float64: the two paths agree to rounding, ~1e-12
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    grads = {}
    outputs = {}
    for fused in (True, False):
        _set_fused(model, fused)
        model.zero_grad()
        out = model(x)
        out.sum().backward()
        outputs[fused] = out.detach()
        grads[fused] = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.testing.assert_close(outputs[True], outputs[False], atol=1e-9, rtol=1e-9)
    for n in grads[True]:
        torch.testing.assert_close(grads[True][n], grads[False][n], atol=1e-8, rtol=1e-8, msg=n)


def test_fused_tail_is_used_and_saves_fewer_bytes(monkeypatch):
    torch.manual_seed(0)
    model = create_model("seresnet50", num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    calls = []
    real = blocks.conv_bn_se_add_relu
    monkeypatch.setattr(blocks, "conv_bn_se_add_relu", lambda *a: calls.append(1) or real(*a))
    fused = _saved_bytes(model, x)
    assert len(calls) == 16  # every bottleneck of SE-ResNet-50
    _set_fused(model, False)
    unfused = _saved_bytes(model, x)
    plain = _saved_bytes(create_model("resnet50", num_classes=10), x)
    # SE's extra saved bytes over the plain network, beyond its own FC weights (which every linear layer
    # saves): the fused tail keeps under a quarter of the unfused tail's. (At 224x224, where the weights
    # no longer dominate, `senet bench` measures the ratio to ResNet-50; see benchmarks/README.md.)
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if ".se." in n)
    assert fused - plain - weights < 0.25 * (unfused - plain - weights)


def test_hooked_se_blocks_take_the_plain_path(monkeypatch):
    model = create_model("seresnet18", num_classes=5)
    calls = []
    real = blocks.conv_bn_se_add_relu
    monkeypatch.setattr(blocks, "conv_bn_se_add_relu", lambda *a: calls.append(1) or real(*a))
    seen = []
    for unit in _units(model):
        unit.se.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randn(2, 3, 32, 32))
    assert calls == [] and len(seen) == len(_units(model))


def test_non_standard_integration_is_never_fused():
    model = create_model("seresnet18", num_classes=5, integration="post")
    assert not any(unit.fused_tail for unit in _units(model))
