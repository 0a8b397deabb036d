"""senet.analysis gate statistics and plots, from a small real run: a tiny SE network trained a few steps on
scikit-learn's digits (8x8 images, 10 classes, bundled with scikit-learn, no download)."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

from senet.analysis import (
    BlockGates,
    collect_gates,
    fit_reduction,
    gate_modules,
    model_cost,
    plot_cost_breakdown,
    plot_gate_histograms,
    plot_gate_profiles,
    plot_reduction_sweep,
)
from senet.layers import SqueezeExcite
from senet.layers.nd import adaptive_avg_pool_nd, conv_nd, norm_nd

GATES = ["0.3.gate", "1.3.gate"]


def _model() -> nn.Sequential:
    conv, norm = conv_nd(2), norm_nd(2)
    return nn.Sequential(
        nn.Sequential(conv(1, 16, 3, padding=1), norm(16), nn.ReLU(), SqueezeExcite(16, reduction=4)),  # 8x8
        nn.Sequential(conv(16, 32, 3, stride=2, padding=1), norm(32), nn.ReLU(), SqueezeExcite(32, reduction=4)),  # 4x4
        nn.Sequential(adaptive_avg_pool_nd(2)(1), nn.Flatten(), nn.Linear(32, 10)),
    )


@pytest.fixture(scope="module")
def digits_run():
    """(trained model, list of (x, y) test batches, test accuracy)."""
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y))
    train, test = order[:1400], order[1400:]
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for step in range(60):
        batch = train[torch.randint(0, len(train), (128,))]
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    batches = [(x[test[i : i + 100]], y[test[i : i + 100]]) for i in range(0, len(test), 100)]
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x[test]).argmax(1) == y[test]).float().mean())
    return model, batches, accuracy


def _manual_gates(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The two blocks' gates (N, C), computed by hand from the layers."""
    with torch.no_grad():
        h0 = model[0][:3](x)
        h1 = model[1][:3](model[0](x))
        return [model[0][3].gates(h0).flatten(1), model[1][3].gates(h1).flatten(1)]


def test_training_run_is_real(digits_run):
    _, _, accuracy = digits_run
    assert accuracy > 0.5  # 10 classes: chance is 0.1


def test_collect_gates_matches_manual_per_class_statistics(digits_run):
    model, batches, _ = digits_run
    assert list(gate_modules(model)) == GATES
    stats = collect_gates(model, batches)
    assert stats.names == tuple(GATES) and stats.num_examples == 397
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    for block, gates in zip(stats.blocks, _manual_gates(model, x)):
        assert block.classes == tuple(range(10))
        assert block.mean.shape == block.std.shape == (10, gates.shape[1])
        assert block.count.tolist() == [int((y == k).sum()) for k in range(10)]
        for k in range(10):
            rows = gates[y == k].double()
            torch.testing.assert_close(block.mean[k].double(), rows.mean(0), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(block.std[k].double(), rows.std(0, unbiased=False), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(block.profile.double(), gates.double().mean(0), atol=1e-5, rtol=1e-5)
        assert block.mean_gate == pytest.approx(float(gates.mean()), abs=1e-5)
        assert block.std_gate == pytest.approx(float(gates.double().std(unbiased=False)), abs=1e-4)
        assert block.near_zero == pytest.approx(float((gates < 0.05).double().mean()))
        assert block.near_one == pytest.approx(float((gates > 0.95).double().mean()))
        assert int(block.histogram.sum()) + block.below + block.above == gates.numel()
        profiles = torch.stack([gates[y == k].double().mean(0) for k in range(10)])
        pairwise = [float(((profiles[i] - profiles[j]) ** 2).mean().sqrt()) for i, j in combinations(range(10), 2)]
        assert block.divergence == pytest.approx(np.mean(pairwise), rel=1e-4)
        between = sum(int((y == k).sum()) * ((profiles[k] - gates.double().mean(0)) ** 2).sum() for k in range(10))
        total = ((gates.double() - gates.double().mean(0)) ** 2).sum()
        if total > 1e-12 * gates.shape[1]:
            assert block.class_variance_ratio == pytest.approx(float(between / total), rel=1e-3)
        else:  # saturated block: constant gates, no variance to explain
            assert block.class_variance_ratio == 0.0 and block.divergence < 1e-6
        assert 0.0 <= block.class_variance_ratio <= 1.0
    assert 0.0 < stats.blocks[0].class_variance_ratio < 1.0


def test_collect_gates_leaves_model_unchanged(digits_run):
    model, batches, _ = digits_run
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    collect_gates(model, batches, max_batches=1)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())
    model.eval()


def test_collect_gates_options_and_errors(digits_run):
    model, batches, _ = digits_run
    assert collect_gates(model, batches, max_batches=2).num_examples == 200
    assert collect_gates(model, batches, bins=10).blocks[0].histogram.shape == (10,)
    with pytest.raises(ValueError, match="max_batches"):
        collect_gates(model, batches, max_batches=0)
    with pytest.raises(ValueError, match="no registered attention"):
        collect_gates(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), batches)
    with pytest.raises(ValueError, match="integer class labels"):
        collect_gates(model, [(batches[0][0], batches[0][1].float())])
    with pytest.raises(ValueError, match="no batches"):
        collect_gates(model, [])
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        collect_gates(model, [batches[0][0]])


def test_gate_stats_json_and_frame(digits_run, tmp_path):
    model, batches, _ = digits_run
    stats = collect_gates(model, batches)
    path = stats.to_json(tmp_path / "gates" / "stats.json")
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(stats.to_dict()))
    assert [b["block"] for b in data["blocks"]] == GATES
    assert data["blocks"][1]["mean"] == stats.blocks[1].mean.tolist()
    assert data["blocks"][0]["divergence"] == stats.blocks[0].divergence
    frame = stats.to_frame()
    assert len(frame) == 10 * (16 + 32)
    row = frame[(frame["block"] == GATES[1]) & (frame["class"] == 3) & (frame["channel"] == 5)].iloc[0]
    assert row["mean"] == pytest.approx(float(stats.blocks[1].mean[3, 5]))


def test_divergence_and_variance_ratio_extremes():
    def block(mean, std):
        mean, std = torch.tensor(mean), torch.tensor(std)
        return BlockGates("b", (0, 1), torch.tensor([5, 5]), mean, std, torch.zeros(4), 0, 0, 0.0, 0.0)

    agnostic = block([[0.3, 0.7], [0.3, 0.7]], [[0.1, 0.1], [0.1, 0.1]])
    assert agnostic.divergence == 0.0 and agnostic.class_variance_ratio == 0.0
    specific = block([[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]])
    assert specific.divergence == pytest.approx(1.0) and specific.class_variance_ratio == pytest.approx(1.0)


def test_plots_from_real_run(digits_run, tmp_path):
    model, batches, _ = digits_run
    stats = collect_gates(model, batches)
    report = model_cost(model, (1, 8, 8))
    fit = fit_reduction([2, 4, 8, 16, 32], [0.52, 0.47, 0.46, 0.49, 0.60], channels=32)
    plots = {
        "profiles": plot_gate_profiles(stats, tmp_path / "profiles.png"),
        "histograms": plot_gate_histograms(stats, tmp_path / "histograms"),
        "cost": plot_cost_breakdown(report, tmp_path / "plots" / "cost.svg"),
        "sweep": plot_reduction_sweep(fit, tmp_path / "sweep"),
    }
    for name, plot in plots.items():
        assert plot.png == tmp_path / ("plots" if name == "cost" else "") / f"{name}.png"
        assert plot.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.png.stat().st_size > 1000
        assert "<svg" in plot.svg.read_text()[:1000] and plot.svg.stat().st_size > 1000
    labels = {
        name: [(ax.get_xlabel(), ax.get_ylabel()) for ax in plot.figure.axes if ax.get_visible()]
        for name, plot in plots.items()
    }
    assert labels["profiles"] == [("channel index", "gate activation")] * 2
    assert labels["histograms"] == [("gate value", "fraction of gates")] * 2
    assert labels["cost"] == [("stage", "FLOPs per example"), ("stage", "parameters")]
    assert labels["sweep"] == [("reduction ratio r", "validation loss")]
    profile_axis = plots["profiles"].figure.axes[0]
    assert len(profile_axis.get_lines()) == 11  # 10 classes + the mean over all examples
    assert profile_axis.get_title().startswith("0.3.gate")
    cost_axis = plots["cost"].figure.axes[0]
    assert [t.get_text() for t in cost_axis.get_xticklabels()] == ["0", "1", "2"]
    assert plots["sweep"].figure.axes[0].get_lines()[-1].get_xdata()[0] == pytest.approx(fit.r_star)


def test_gates_and_cost_on_registered_cifar_model(tmp_path):
    from senet.models import create_model, list_models

    if "seresnet20_cifar" not in list_models():
        pytest.skip("seresnet20_cifar is not registered yet")
    model = create_model("seresnet20_cifar", in_channels=1, num_classes=10)
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 10
    stats = collect_gates(model, [(x, y)])
    assert stats.names == tuple(f"layer{s}.{b}.se.gate" for s in (1, 2, 3) for b in range(3))
    report = model_cost(model, (1, 8, 8))
    assert [r.name for r in report.stages] == ["stem", "layer1", "layer2", "layer3", "head"]
    assert len(report.attention) == 9 and report.dense_flops == report.flop_counter_flops
    plot = plot_cost_breakdown(report, tmp_path / "cost")
    assert plot.png.stat().st_size > 0
