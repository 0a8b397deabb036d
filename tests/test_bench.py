"""The benchmark's own checks: correctness before timing, JSON fields, ratios from medians, allocator tuning.

Timings are never asserted (the machine is shared); only what the benchmark computes from them.
"""

from __future__ import annotations

import collections
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from senet.bench import format_results, run_benchmarks
from senet.bench import allocator as bench_allocator
from senet.bench import blocks as bench_blocks
from senet.bench.allocator import TUNED_SETTINGS, glibc_version, tune_allocator
from senet.bench.blocks import BlockCase, ResidualTail, make_peers, reference_se, run_block_case
from senet.bench.models import PAIRS, _check_copies, _ratios, build_models, measure_memory, run_model_case, unfuse
from senet.bench.run import run_worker
from senet.bench.timing import interleaved, peak_bytes, ratio, saved_bytes, summarize
from senet.layers import SqueezeExcite
from senet.models import create_model


def test_interleaved_shuffles_each_repeat_and_summaries_use_medians():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = interleaved(fns, repeats=60)
    assert {name: len(s) for name, s in samples.items()} == {"a": 60, "b": 60, "c": 60}
    timed = calls[6:]  # after the warm-up and calibration calls (two per function)
    rounds = ["".join(timed[i : i + 3]) for i in range(0, 180, 3)]
    assert all(sorted(r) == list("abc") for r in rounds)  # every repeat calls each function once
    # no fixed predecessor: inside the repeats every ordered pair occurs (a rotated "abc" never has b, a)
    follows = collections.Counter(pair for r in rounds for pair in zip(r, r[1:]))
    assert len(follows) == 6 and min(follows.values()) >= 5
    calls.clear()
    interleaved(fns, repeats=60)
    assert calls[6:] == timed  # seeded: the same order again
    stats = summarize([3.0, 1.0, 2.0, 10.0])
    assert stats["median_s"] == 2.5 and stats["min_s"] == 1.0 and stats["max_s"] == 10.0
    r = ratio([2.0, 4.0, 6.0], [1.0, 1.0, 4.0])
    assert r["ratio"] == 4.0 and r["paired_min"] == 1.5 and r["paired_max"] == 4.0 and r["ratio_of_minimums"] == 2.0
    assert r["paired_median"] == 2.0  # per-repeat ratios 2.0, 4.0, 1.5
    assert r["paired_median_ci95"] == [1.5, 4.0]  # three samples: the whole range
    with pytest.raises(ValueError, match="repeats"):
        interleaved(fns, repeats=0)


def test_interleaved_synchronizes_around_every_sample():
    events: list[str] = []
    fns = {name: (lambda name=name: events.append(name)) for name in "ab"}
    interleaved(fns, repeats=3, synchronize=lambda: events.append("sync"))
    timed = events[8:]  # calibration: call, sync, call, sync per function
    assert events[:4] == ["a", "sync", "a", "sync"]
    assert [timed[i] for i in range(0, len(timed), 3)] == ["sync"] * 6  # before each sample
    assert [timed[i] for i in range(2, len(timed), 3)] == ["sync"] * 6  # and after it
    assert sorted(timed[i] for i in range(1, len(timed), 3)) == list("aaabbb")


def test_median_interval_is_the_binomial_order_statistic_interval():
    from senet.bench.timing import median_interval

    # n = 31: P(B(31, 1/2) <= 9) = 0.0147 <= 0.025 < P(B <= 10) = 0.0354, so x_(10) and x_(22)
    assert median_interval([float(v) for v in range(31, 0, -1)]) == (10.0, 22.0)
    assert median_interval([float(v) for v in range(1, 12)]) == (2.0, 10.0)  # n = 11: k = 2
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == (1.0, 6.0)  # n = 6: P(B = 0) = 1/64 <= 0.025
    assert median_interval([5.0]) == (5.0, 5.0)
    values = [float(v) for v in range(1, 102)]
    (low50, high50), (low95, high95) = median_interval(values, 0.5), median_interval(values)
    assert low95 < low50 <= high50 < high95  # a lower level, a narrower interval
    many = [float(v) for v in range(2001)]  # no float overflow in 2**n
    low, high = median_interval(many)
    assert low < 1000.0 < high and high - low < 100
    with pytest.raises(ValueError, match="level"):
        median_interval([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="values"):
        median_interval([])


def test_saved_bytes_counts_unique_storages_and_peak_bytes():
    x = torch.randn(64, 32)
    w = torch.randn(32, 32, requires_grad=True)
    out_bytes = 64 * 32 * 4

    def forward():
        h = x @ w  # saves x (w needs no input gradient)
        return h.relu()  # saves its output

    assert saved_bytes(forward) == 2 * out_bytes
    shared = torch.randn(64, 32, requires_grad=True)
    assert saved_bytes(lambda: (shared * shared)) == out_bytes  # one storage saved twice counts once

    def step():
        a = torch.ones(256, 1024)  # 1 MiB
        b = a * 2  # 2 MiB live
        del a
        return b.sum()

    assert 2 * 2**20 <= peak_bytes(step) < 2 * 2**20 + 1024  # plus a few scalars


def test_peers_get_senet_weights_and_skip_by_rank():
    se = SqueezeExcite(32, reduction=16)
    x = torch.randn(2, 32, 5, 5)
    peers, skipped = make_peers(se, 2)
    assert set(peers) == {"timm", "torchvision", "monai"} and not skipped
    for peer in peers.values():
        torch.testing.assert_close(peer(x), se(x))
    torch.testing.assert_close(reference_se(x, se).float(), se(x))
    peers, skipped = make_peers(se, 3)
    assert set(peers) == {"monai"} and set(skipped) == {"timm", "torchvision"}


@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
def test_block_case_fields_and_ratios_from_medians(mode):
    row = run_block_case(BlockCase((2, 32, 6, 6), "channels_last"), mode, repeats=3, stream_bytes=2**16)
    assert row["mode"] == mode and row["shape"] == [2, 32, 6, 6] and row["layout"] == "channels_last"
    assert set(row["results"]) == {
        "senet", "timm", "torchvision", "monai", "unit_plain", "unit_senet", "unit_timm", "unit_timm_plain"
    }
    nbytes = 2 * 32 * 6 * 6 * 4
    assert row["tensor_bytes"] == nbytes and row["stream_bytes"] == 2**16
    bandwidth = 2 * 2**16 / row["stream"]["median_s"]
    copy_bandwidth = 2 * nbytes / row["copy"]["median_s"]
    assert row["bandwidth_gbs"] == pytest.approx(bandwidth / 1e9)
    assert row["copy_bandwidth_gbs"] == pytest.approx(copy_bandwidth / 1e9)
    assert row["bound_s"] == pytest.approx(row["bound_passes"] * nbytes / bandwidth)
    assert row["copy_bound_s"] == pytest.approx(row["bound_passes"] * nbytes / copy_bandwidth)
    assert row["bound_passes"] == (3 if mode == "forward" else 7)
    for stats in row["results"].values():
        assert stats["median_s"] == statistics.median(stats["samples_s"]) and len(stats["samples_s"]) == 3
        assert stats["ratio_to_bound"] == pytest.approx(stats["median_s"] / row["bound_s"])
        assert stats["ratio_to_copy_bound"] == pytest.approx(stats["median_s"] / row["copy_bound_s"])
        assert stats["max_abs_error"] < 1e-4
    assert set(row["in_model"]) == {"unit_senet", "unit_timm"}  # each against its own library's plain unit
    for name, cost in row["in_model"].items():
        plain = row["results"][f"{name}_plain" if name == "unit_timm" else "unit_plain"]["median_s"]
        assert cost["se_cost_s"] == pytest.approx(row["results"][name]["median_s"] - plain)
        assert cost["ratio_to_bound"] == pytest.approx(cost["se_cost_s"] / row["bound_s"])
        assert cost["ratio_to_copy_bound"] == pytest.approx(cost["se_cost_s"] / row["copy_bound_s"])
    with pytest.raises(ValueError, match="stream_bytes"):
        run_block_case(BlockCase((2, 32, 6, 6)), mode, repeats=1, stream_bytes=0)


def test_block_case_refuses_to_time_a_wrong_implementation(monkeypatch):
    def broken_peers(se, spatial_dims):
        peer = copy.deepcopy(se)
        with torch.no_grad():
            peer.fc2.bias.add_(1.0)  # different gates
        return {"broken": peer}, {}

    monkeypatch.setattr(bench_blocks, "make_peers", broken_peers)
    with pytest.raises(RuntimeError, match="broken disagrees with the reference"):
        run_block_case(BlockCase((2, 16, 4)), "forward", repeats=1)
    with pytest.raises(ValueError, match="mode must be one of"):
        run_block_case(BlockCase((2, 16, 4)), "backward", repeats=1)


def test_residual_tails_agree():
    se = SqueezeExcite(16, reduction=4)
    bn = nn.BatchNorm1d(16)
    c, identity = torch.randn(2, 16, 9), torch.randn(2, 16, 9)
    want = torch.relu(se(bn(c)) + identity)
    torch.testing.assert_close(ResidualTail("peer", copy.deepcopy(bn), se)(c, identity), want)
    torch.testing.assert_close(ResidualTail("fused", copy.deepcopy(bn), se)(c, identity), want)
    torch.testing.assert_close(ResidualTail("plain", copy.deepcopy(bn))(c, identity), torch.relu(bn(c) + identity))


def test_copies_match_their_models_and_are_checked():
    from senet.bench.models import QUICK_MODEL_CASE

    models, skipped = build_models(QUICK_MODEL_CASE)
    assert "senet_se_unfused" in models and "senet_se_unfused" not in skipped
    assert not any(getattr(m, "fused_tail", False) for m in models["senet_se_unfused"].modules())
    assert sum(getattr(m, "fused_tail", False) for m in models["senet_se"].modules()) == 16
    twin, plain = models["senet_plain_twin"], models["senet_plain"]  # the A/A control: same values, own memory
    for a, b in zip(twin.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    x = torch.randn(2, 3, 64, 64)
    for training in (False, True):
        errors = _check_copies(models, x, training)
        assert set(errors) == {"senet_se_unfused", "senet_plain_twin"}
        assert errors["senet_se_unfused"] < 1e-3 and errors["senet_plain_twin"] == 0.0
    for name, reference in (("senet_se_unfused", "senet_se"), ("senet_plain_twin", "senet_plain")):
        wrong = dict(models)
        wrong[name] = copy.deepcopy(models[name])
        with torch.no_grad():  # a wrong copy is refused before it is timed
            next(wrong[name].parameters()).add_(1.0)
        with pytest.raises(RuntimeError, match=f"{name} disagrees with {reference}"):
            _check_copies(wrong, x, False)
    assert _check_copies({"senet_plain_twin": twin}, x, False) == {}  # nothing to check it against
    assert unfuse(create_model("resnet50")) == 0


def test_model_case_names_select_the_models():
    import dataclasses

    from senet.bench.models import QUICK_MODEL_CASE

    case = dataclasses.replace(QUICK_MODEL_CASE, names=("senet_se", "senet_plain"), train_layouts=())
    models, skipped = build_models(case)
    assert sorted(models) == ["senet_plain", "senet_se"] and skipped == {}
    result = run_model_case(case, repeats=1, memory=False)
    assert [row["mode"] for row in result["timings"]] == ["inference"]
    assert set(result["timings"][0]["ratios"]) == {"senet_se/senet_plain"}
    with pytest.raises(ValueError, match="unknown \\['senet_big'\\]"):
        build_models(dataclasses.replace(case, names=("senet_se", "senet_big")))


def test_model_ratios_and_memory_fields():
    samples = {"senet_se": [2.0, 4.0, 3.0], "senet_plain": [1.0, 2.0, 2.0], "timm_se": [1.0, 1.0, 1.0]}
    ratios = _ratios(samples)
    assert set(ratios) == {f"{a}/{b}" for a, b in PAIRS if a in samples and b in samples}
    assert ratios["senet_se/senet_plain"]["ratio"] == 3.0 / 2.0
    models = {"senet_se": nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))}
    models["senet_plain"] = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    x, target = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    for m in models.values():
        m(x)
    memory = measure_memory(models, x, target)
    pair = memory["ratios"]["senet_se/senet_plain"]
    values = memory["results"]
    assert pair["saved_bytes"] == values["senet_se"]["saved_bytes"] / values["senet_plain"]["saved_bytes"]
    assert values["senet_se"]["saved_bytes"] > values["senet_plain"]["saved_bytes"] > 0
    assert values["senet_se"]["peak_bytes"] > 0


def test_worker_json_has_the_expected_fields():
    result = run_worker(allocator="default", quick=True, threads=1, suites=("blocks",))
    assert result["allocator"] == "default" and result["mallopt"] == {}
    assert len(result["blocks"]) == 2 * len(bench_blocks.QUICK_CASES)
    assert {row["mode"] for row in result["blocks"]} == {"forward", "forward_backward"}
    json.dumps(result)  # plain data only
    text = format_results({"meta": _meta(), "runs": {"default": result}})
    assert "allocator: default" in text and "2x32x8x8" in text
    with pytest.raises(ValueError, match="allocator must be one of"):
        run_worker(allocator="jemalloc", quick=True, threads=1, suites=())


def test_parts_suite_times_each_part_of_the_eval_paths_exclusively():
    import senet.layers.fused as fused
    from senet.bench.parts import PARTS, run_parts_case
    from senet.bench.units import UnitCase
    from senet.layers import se_ops
    from senet.layers.se import SqueezeExcite

    excite = SqueezeExcite.excite
    result = run_worker(allocator="default", quick=True, threads=1, suites=("parts",))["parts"]
    json.dumps(result)  # plain data only
    assert (result["batch"], result["image_size"], result["layout"], result["repeats"]) == (1, 64, "nchw", 3)
    se, plain = result["samples_s"]["se"], result["samples_s"]["plain"]
    se_only = [p for p in PARTS if p not in ("norm", "add_relu")]
    for i in range(3):
        assert all(se[p][i] > 0 for p in se_only) and se["norm"][i] == 0  # every SE unit gates its norm
        assert all(plain[p][i] == 0 for p in se_only) and plain["norm"][i] > 0 and plain["add_relu"][i] > 0
        for series in (se, plain):  # the parts and the rest make up the forward
            assert sum(series[p][i] for p in (*PARTS, "other")) == pytest.approx(series["forward"][i], rel=1e-9)
            assert series["other"][i] > 0
    fc1 = [1e3 * (a - b) for a, b in zip(se["fc1"], plain["fc1"])]
    assert result["se_minus_plain_ms"]["fc1"] == pytest.approx(statistics.median(fc1))
    total = [1e3 * sum(se[p][i] - plain[p][i] for p in PARTS) for i in range(3)]
    assert result["parts_se_minus_plain_ms"] == pytest.approx(statistics.median(total))
    # the timers are gone afterwards
    assert fused.squeeze_mean is se_ops.squeeze_mean and fused.add_relu_ is se_ops.add_relu_
    assert SqueezeExcite.excite is excite
    text = format_results({"meta": _meta(), "runs": {"default": {"load_average_start": [0.0], "load_average_end": [0.0], "mallopt": {}, "parts": result}}})
    assert "Parts (nchw, batch 1, 64x64, 3 repeats)" in text and "w3_product" in text
    with pytest.raises(ValueError, match="repeats must be an int >= 3"):
        run_parts_case(UnitCase(batch=1, image_size=64), repeats=2)


def test_floor_suite_counts_what_se_reads_and_times_the_small_ops():
    import senet.layers.fused as fused
    from senet.bench.floor import BEFORE, COLD_OPS, PRODUCTS, READS, counted_reads, product_costs, run_floor_case, se_products
    from senet.bench.units import UnitCase
    from senet.layers import se_ops
    from senet.layers.se import SqueezeExcite

    conv_squeeze = fused._conv_squeeze

    result = run_worker(allocator="default", quick=True, threads=1, suites=("floor",))["floor"]
    json.dumps(result)  # plain data only
    assert (result["batch"], result["image_size"], result["layout"], result["repeats"]) == (1, 64, "nchw", 3)
    reads = result["reads"]
    assert set(reads) == set(READS) and result["read_bytes"] == sum(reads.values())
    # the excitation's parameters: W1 (C/16, C), b1, W2 (C, C/16), b2 in every unit of every stage
    widths = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert reads["excitation_params"] == 4 * sum(2 * c * (c // 16) + c // 16 + c for c in widths)
    # each unit pools either the 1x1 convolution's input h (then multiplies by its W3) or its output c
    model = create_model("seresnet50").eval()
    sizes = []
    units = [m for m in model.modules() if hasattr(m, "conv3")]
    def record(conv, args, out):  # bytes of h, c and W3
        sizes.append((args[0].numel() * 4, out.numel() * 4, conv.weight.numel() * 4))

    handles = [unit.conv3.register_forward_hook(record) for unit in units]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for handle in handles:
        handle.remove()
    assert len(sizes) == 16
    h_bytes, c_bytes, w_bytes = (sum(column) for column in zip(*sizes))
    assert 0 < reads["w3"] < w_bytes and h_bytes < reads["squeezed_maps"] < c_bytes  # both routes at 64x64
    assert result["read_ms"] == pytest.approx(1e3 * result["read_bytes"] / (result["bandwidth_gbs"] * 1e9))
    assert result["budget_ms"] == pytest.approx(0.01 * result["forward_ms"]["plain"])
    se, plain = result["samples_s"]["se"], result["samples_s"]["plain"]
    assert result["se_minus_plain_ms"] == pytest.approx(1e3 * statistics.median(a - b for a, b in zip(se, plain)))
    cold = result["samples_s"]["cold_ops"]
    assert set(cold) == set(BEFORE) and all(set(cold[b]) == set(COLD_OPS) for b in BEFORE)
    for b in BEFORE:
        for op in COLD_OPS:
            assert len(cold[b][op]) == 3 and min(cold[b][op]) > 0
            assert result["cold_ops_us"][b][op] == pytest.approx(1e6 * statistics.median(cold[b][op]))
    # the small products: every unit's two FC layers, and W3 wherever the squeeze went through h
    products = result["products"]
    assert {p["kind"] for p in products} <= set(PRODUCTS) and all(p["rows"] == 1 for p in products)
    fc1 = sorted((p["weight_shape"], p["count"]) for p in products if p["kind"] == "fc1")
    assert fc1 == [([c // 16, c], widths.count(c)) for c in (256, 512, 1024, 2048)]
    assert sum(p["count"] for p in products if p["kind"] == "fc2") == 16
    assert 4 * sum(p["count"] * math.prod(p["weight_shape"]) for p in products if p["kind"] == "w3") == reads["w3"]
    for p in products:
        assert len(p["samples_s"]["product"]) == 3 and min(p["samples_s"]["product"]) > 0
        assert p["product_us"] == pytest.approx(1e6 * statistics.median(p["samples_s"]["product"]))
        assert p["stored_in_out_us"] == pytest.approx(1e6 * statistics.median(p["samples_s"]["stored_in_out"]))
        assert p["stream_gbs"] == pytest.approx(4 * math.prod(p["weight_shape"]) / p["stream_us"] / 1e3)
    assert result["products_ms"] == pytest.approx(1e-3 * sum(p["count"] * p["product_us"] for p in products))
    keys = ("kind", "rows", "weight_shape", "count")
    assert se_products(model, torch.randn(1, 3, 64, 64)) == [{k: p[k] for k in keys} for p in products]
    assert fused._conv_squeeze is conv_squeeze and not any(se.fc1._forward_hooks for se in model.modules() if isinstance(se, SqueezeExcite))
    assert fused.squeeze_mean is se_ops.squeeze_mean  # the counters are gone afterwards
    with pytest.raises(RuntimeError, match="stop"):
        with counted_reads(dict.fromkeys(READS, 0)):
            assert fused.squeeze_mean is not se_ops.squeeze_mean
            raise RuntimeError("stop")
    assert fused.squeeze_mean is se_ops.squeeze_mean
    text = format_results({"meta": _meta(), "runs": {"default": {"load_average_start": [0.0], "load_average_end": [0.0], "mallopt": {}, "floor": result}}})
    assert "Floor (nchw, batch 1, 64x64, 3 repeats)" in text and "the 1% budget" in text and "copy_64MiB" in text
    assert "SE's products per forward, hot" in text and "1024x64" in text
    with pytest.raises(ValueError, match="repeats must be an int >= 3"):
        run_floor_case(UnitCase(batch=1, image_size=64), repeats=2)
    with pytest.raises(ValueError, match="stream_bytes must be an int >= 4"):
        run_floor_case(UnitCase(batch=1, image_size=64), repeats=3, stream_bytes=2)
    with pytest.raises(ValueError, match="products must be entries of se_products"):
        product_costs([{"kind": "fc3", "rows": 1, "weight_shape": [4, 4], "count": 1}], repeats=3)


def test_parts_timer_gives_each_part_its_own_time_and_restores_the_functions():
    import time as time_module

    import senet.layers.fused as fused
    from senet.bench.parts import PartTimer, timed_parts

    timer = PartTimer()
    inner = timer.wrap(lambda: time_module.sleep(0.02), "inner")
    outer = timer.wrap(lambda: (time_module.sleep(0.01), inner()), lambda: "outer")
    outer()
    assert 0.02 <= timer.totals["inner"] < 0.05  # the inner part's own time
    assert 0.01 <= timer.totals["outer"] < 0.02  # the outer part's time less the inner's
    original = fused._inference_norm
    model = nn.Sequential(SqueezeExcite(16, reduction=4))
    with pytest.raises(RuntimeError, match="stop"):
        with timed_parts({"se": model}, PartTimer()):
            assert fused._inference_norm is not original and model[0].fc1._forward_hooks
            raise RuntimeError("stop")
    assert fused._inference_norm is original and not model[0].fc1._forward_hooks and not model[0].gate._forward_pre_hooks


def test_units_suite_times_every_unit_and_its_segments():
    from senet.bench.units import SEGMENTS, STAGES, UnitCase, run_unit_case

    result = run_worker(allocator="default", quick=True, threads=1, suites=("units",))["units"]
    json.dumps(result)  # plain data only
    assert (result["batch"], result["image_size"], result["layout"], result["repeats"]) == (1, 64, "nchw", 3)
    for key in ("se", "plain"):
        in_model, segments = result["samples_s"][key]["in_model"], result["segment_samples_s"][key]
        assert len(in_model) == 16 + 1 and len(segments) == 16 * len(SEGMENTS)  # 3+4+6+3 units and the forward
        for name, times in in_model.items():
            if name != "forward":  # a unit's segments add up to its time, which is part of the forward's
                parts = [segments[f"{name}/{segment}"] for segment in SEGMENTS]
                assert all(min(part) > 0 for part in parts)
                assert [sum(p[i] for p in parts) for i in range(3)] == pytest.approx(times, rel=1e-6)
        assert all(sum(v[i] for n, v in in_model.items() if n != "forward") < in_model["forward"][i] for i in range(3))
        stage = result["stage_ms"][key]["alone"]["layer3"]
        alone = result["samples_s"][key]["alone"]
        assert stage == pytest.approx(1e3 * sum(statistics.median(alone[f"layer3.{i}"]) for i in range(6)))
    se, plain = result["segment_samples_s"]["se"], result["segment_samples_s"]["plain"]
    layer2 = [sum(se[f"layer2.{u}/se_ops"][i] - plain[f"layer2.{u}/se_ops"][i] for u in range(4)) for i in range(3)]
    assert result["segment_se_minus_plain_ms"]["se_ops"]["layer2"] == pytest.approx(1e3 * statistics.median(layer2))
    assert set(result["segment_se_minus_plain_ms"]) == set(SEGMENTS)
    assert set(result["segment_se_minus_plain_ms"]["tail"]) == set(STAGES)
    text = format_results({"meta": _meta(), "runs": {"default": {"load_average_start": [0.0], "load_average_end": [0.0], "mallopt": {}, "units": result}}})
    assert "Units (nchw, batch 1, 64x64, 3 repeats)" in text and "se_ops" in text and "all units" in text
    with pytest.raises(ValueError, match="repeats must be an int >= 3"):
        run_unit_case(UnitCase(batch=1, image_size=64), repeats=2)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        UnitCase(batch=1, image_size=0)


def test_tails_suite_checks_every_candidate_then_times_it(monkeypatch):
    from senet.bench import tails

    rows = run_worker(allocator="default", quick=True, threads=1, suites=("tails",))["tails"]
    assert [(row["layout"], row["shape"]) for row in rows] == [
        (layout, [1, c_out, size, size]) for layout in ("nchw", "channels_last") for _, c_out, size in tails.STAGES
    ]
    for row in rows:
        assert row["max_abs_diff_vs_formula"] < 1e-4
        assert set(row["samples_ms"]) == {"plain_fresh", "plain_inplace", "se_fresh", "se_inplace", "se_tail"}
        assert all(len(times) == 3 for times in row["samples_ms"].values())
        diffs = [a - b for a, b in zip(row["samples_ms"]["se_tail"], row["samples_ms"]["plain_inplace"])]
        assert row["se_tail_minus_plain_inplace_ms"] == pytest.approx(statistics.median(diffs))
    assert "Tails" in "\n".join(tails.tail_table(rows)) and "se_tail" in "\n".join(tails.tail_table(rows))
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        tails.run_tails(repeats=0, batch=1)
    # a candidate that computes the wrong tail stops the run before anything is timed
    monkeypatch.setattr(tails, "conv_bn_se_add_relu", lambda h, conv, bn, se, identity: torch.relu(bn(conv(h)) + identity))
    with pytest.raises(AssertionError, match="se_tail"):
        tails.run_tails(repeats=1, batch=1, flush_bytes=1024)


def test_squeeze_suite_checks_every_route_and_reports_which_one_squeeze_mean_took(monkeypatch):
    from senet.bench import squeeze
    from senet.layers import se_ops

    rows = run_worker(allocator="default", quick=True, threads=1, suites=("squeeze",))["squeeze"]
    assert [(row["layout"], tuple(row["shape"])) for row in rows] == [
        (layout, shape) for layout in ("nchw", "channels_last") for shape in squeeze.QUICK_SHAPES
    ]
    for row in rows:
        assert set(row["samples_ms"]) == {"mean", "product", "squeeze_mean"} and row["threads"] == 1
        assert all(len(times) == 3 for times in row["samples_ms"].values())
        ratios = [a / b for a, b in zip(row["samples_ms"]["product"], row["samples_ms"]["mean"])]
        assert row["product_over_mean"] == pytest.approx(statistics.median(ratios))
        low, high = row["product_over_mean_interval"]
        assert low <= row["product_over_mean"] <= high
        positions = math.prod(row["shape"][2:])
        took = se_ops._pool_by_product(positions, row["shape"][1], channels_last=row["layout"] == "channels_last")
        assert row["squeeze_mean_route"] == ("product" if took else "mean")
        assert row["route_is_the_faster"] == (took == (row["product_over_mean"] < 1))
    table = "\n".join(squeeze.squeeze_table(rows))
    assert "Squeeze routes" in table and "2x8x20x20" in table and "by " in table
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        squeeze.run_squeeze_routes(repeats=0, min_time=0.0)
    with pytest.raises(ValueError, match="min_time must be a number"):
        squeeze.run_squeeze_routes(repeats=1, min_time=-1.0)
    with pytest.raises(ValueError, match="shapes must hold"):
        squeeze.run_squeeze_routes(repeats=1, min_time=0.0, shapes=((2, 8),))
    # a route that pools wrongly stops the run before anything is timed
    monkeypatch.setattr(se_ops, "squeeze_mean", lambda x: x.amax(tuple(range(2, x.ndim))))
    with pytest.raises(AssertionError, match="squeeze_mean"):
        squeeze.run_squeeze_routes(repeats=1, min_time=0.0, shapes=((2, 4, 5, 5),))


def test_ops_suite_accounts_for_every_op_of_both_models():
    from senet.bench import ops

    rows = run_worker(allocator="default", quick=True, threads=1, suites=("ops",))["ops"]
    assert [row["layout"] for row in rows] == list(ops.LAYOUTS)
    for row in rows:
        per_op = row["ops"]
        for key in ("se", "plain"):  # the totals are the sums of the per-op times
            assert sum(op[f"{key}_ms"] for op in per_op) == pytest.approx(row["total_ms"][key], rel=1e-6)
        shared = [op for op in per_op if op["shared"]]
        assert shared and all(op["se_calls"] == pytest.approx(op["plain_calls"]) for op in shared)
        assert {op["op"] for op in shared} == set(row["shared_ops"])
        fc = [op for op in per_op if op["op"].startswith("aten::addmm") and op["plain_calls"] == 0]
        assert len(fc) >= 2 and all(op["se_calls"] > 0 and not op["shared"] for op in fc)  # SE's FC layers
        se_adjusted = sum(op["plain_ms" if op["shared"] else "se_ms"] for op in per_op)
        plain_adjusted = row["total_ms"]["plain"]
        assert row["ratio_with_shared_ops_equal"] == pytest.approx(se_adjusted / plain_adjusted, rel=1e-6)
        gaps = [abs(op["se_ms"] - op["plain_ms"]) for op in per_op]
        assert all(a >= b - 1e-9 for a, b in zip(gaps, gaps[1:]))  # the largest difference first (up to rounding)
    text = "\n".join(ops.ops_table(rows))
    assert "Ops (nchw, batch 1, 64x64)" in text and "with the shared ops" in text
    with pytest.raises(ValueError, match="layout must be one of"):
        ops.profile_pair("nhwc", rounds=1, calls=1)
    with pytest.raises(ValueError, match="rounds must be a positive int"):
        ops.profile_pair("nchw", rounds=0, calls=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device runs the GPU suite for real")
def test_gpu_suite_says_why_it_is_skipped_without_a_gpu():
    result = run_worker(allocator="default", quick=True, threads=1, suites=("gpu",))
    assert result["gpu"] == {"skipped": "no CUDA device (or SENET_TRITON=off)"} or "not installed" in result["gpu"]["skipped"]
    text = format_results({"meta": _meta(), "runs": {"default": result}})
    assert "GPU suite skipped: " in text


def _meta() -> dict:
    return {"cpu": "test", "cpu_count": 1, "threads": 1, "glibc": None, "versions": {"torch": "x"}, "quick": True}


def test_merge_worker_combines_suites_of_one_allocator():
    from senet.bench.run import merge_worker

    runs: dict = {}
    blocks = {"allocator": "tuned", "blocks": [1], "load_average_start": [1.0], "load_average_end": [2.0], "seconds": 5.0}
    models = {"allocator": "tuned", "models": {"m": 1}, "load_average_start": [3.0], "load_average_end": [4.0], "seconds": 7.0}
    merge_worker(runs, blocks)
    merge_worker(runs, models)
    merge_worker(runs, {**blocks, "allocator": "default"})
    assert runs["tuned"]["blocks"] == [1] and runs["tuned"]["models"] == {"m": 1}
    assert runs["tuned"]["load_average_start"] == [1.0] and runs["tuned"]["load_average_end"] == [4.0]
    assert runs["tuned"]["seconds"] == 12.0 and "models" not in runs["default"]
    assert blocks == {"allocator": "tuned", "blocks": [1], "load_average_start": [1.0], "load_average_end": [2.0], "seconds": 5.0}


def test_run_benchmarks_checks_arguments():
    with pytest.raises(ValueError, match="threads must be a positive int"):
        run_benchmarks(threads=0)
    with pytest.raises(ValueError, match="allocators must be taken from"):
        run_benchmarks(allocators=("jemalloc",))
    with pytest.raises(ValueError, match="suites must be taken from"):
        run_benchmarks(suites=("tpu",))


def test_run_benchmarks_runs_each_allocator_in_its_own_worker(tmp_path):
    out = tmp_path / "bench.json"
    results = run_benchmarks(quick=True, out=out, suites=())  # the workers only set up (suites run in-process above)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["meta"]["quick"] is True and saved["meta"]["threads"] == 1
    assert list(saved["runs"]) == ["default", "tuned"]
    assert saved["runs"]["default"]["mallopt"] == {}
    if glibc_version() is not None:
        assert saved["runs"]["tuned"]["mallopt"] == TUNED_SETTINGS
    assert "allocator: default (glibc defaults)" in format_results(results)


@pytest.mark.slow
def test_run_benchmarks_end_to_end_quick(tmp_path):
    results = run_benchmarks(quick=True, out=tmp_path / "bench.json")
    for run in results["runs"].values():
        assert len(run["blocks"]) == 2 * len(bench_blocks.QUICK_CASES)
        assert {row["mode"] for row in run["models"]["timings"]} == {"inference", "train_step"}
    assert "Whole models" in format_results(results)


@pytest.mark.skipif(glibc_version() is None, reason="glibc only")
def test_tuned_allocator_reuses_large_blocks():
    # 64 MiB blocks: glibc mmaps them fresh on every malloc by default (page faults on first touch);
    # after tune_allocator() they come back from the heap, so touching them again faults ~never.
    script = textwrap.dedent(
        """
        import ctypes, importlib.util, resource, sys
        spec = importlib.util.spec_from_file_location("allocator", sys.argv[1])  # without importing torch
        allocator = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(allocator)
        tune_allocator = allocator.tune_allocator
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = (ctypes.c_void_p,)
        def faults(n=64 << 20):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(4):
                p = libc.malloc(n)
                ctypes.memset(p, 1, n)
                libc.free(p)
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        default = faults()
        applied = tune_allocator()
        faults()  # first use grows the heap
        print(default, faults(), sorted(applied))
        """
    )
    path = bench_allocator.__file__
    done = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, check=True)
    default, tuned, applied = done.stdout.split(maxsplit=2)
    assert int(default) > 4 * 16000  # 4 x 64 MiB of fresh 4 KiB pages
    assert int(tuned) < int(default) // 10
    assert applied.strip() == str(sorted(TUNED_SETTINGS))
    assert tune_allocator.__doc__ and "glibc" in tune_allocator.__doc__


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run a script of ``benchmarks/`` (skipped where the checkout has none, e.g. an installed package)."""
    return _scripts(name, [list(args)])[0]


def _scripts(name: str, arg_lists: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run a script of ``benchmarks/`` once per argument list, the runs side by side (each pays the imports)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / name
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for args in arg_lists
    ]
    try:
        outputs = [run.communicate(timeout=600) for run in runs]  # (stdout, stderr); sets each returncode
        return [subprocess.CompletedProcess(run.args, run.returncode, *out) for run, out in zip(runs, outputs)]
    finally:
        for run in runs:  # after a timeout, none is left running
            if run.poll() is None:
                run.kill()


def test_unit_times_script_times_every_unit_in_model_and_alone(tmp_path):
    out = tmp_path / "units.json"
    done = _script("unit_times.py", "--repeats", "3", "--batch", "1", "--image-size", "64", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ("se", "plain"):
        for where in ("in_model", "alone"):
            samples = result["samples_s"][key][where]
            units = {name: v for name, v in samples.items() if name != "forward"}
            assert len(units) == 16 and all(len(v) == 3 and min(v) > 0 for v in units.values())  # 3+4+6+3 units
            stage_ms = result["stage_ms"][key][where]
            assert stage_ms["layer3"] == pytest.approx(1e3 * sum(statistics.median(units[f"layer3.{i}"]) for i in range(6)))
        in_model = result["samples_s"][key]["in_model"]
        for i in range(3):  # the units of a forward take part of its time; stem and head the rest
            assert sum(v[i] for name, v in in_model.items() if name != "forward") < in_model["forward"][i]
        assert result["rest_ms"][key] > 0
        segments = result["segment_samples_s"][key]
        assert len(segments) == 16 * 4  # body, se_ops, tail_conv, tail of every unit
        for name, v in in_model.items():  # a unit's segments add up to its time
            if name != "forward":
                parts = [segments[f"{name}/{part}"] for part in ("body", "se_ops", "tail_conv", "tail")]
                assert all(min(part) > 0 for part in parts)
                assert [sum(p[i] for p in parts) for i in range(3)] == pytest.approx(v, rel=1e-6)
    assert set(result["segment_se_minus_plain_ms"]) == {"body", "se_ops", "tail_conv", "tail"}
    assert "all units" in done.stdout and "layer4" in done.stdout and "se_ops" in done.stdout
    assert _script("unit_times.py", "--repeats", "2").returncode == 2  # argparse error


def test_unit_times_script_with_parts_times_every_part(tmp_path):
    out = tmp_path / "parts.json"
    done = _script("unit_times.py", "--parts", "--repeats", "3", "--batch", "1", "--image-size", "64", "--channels-last", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["layout"] == "channels_last" and result["machine"]["threads"] == 1
    assert min(result["samples_s"]["se"]["gated_norm"]) > 0 and min(result["samples_s"]["plain"]["norm"]) > 0
    assert "w3_product" in done.stdout and "summed over the parts" in done.stdout
    

def test_tail_passes_script_checks_and_times_every_tail(tmp_path):
    out = tmp_path / "tails.json"
    done = _script("tail_passes.py", "--repeats", "3", "--batch", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(row["layout"], row["shape"][2]) for row in rows] == [
        (layout, size) for layout in ("nchw", "channels_last") for size in (56, 28, 14, 7)
    ]
    for row in rows:
        assert row["max_abs_diff_vs_formula"] < 1e-4
        assert all(len(times) == 3 for times in row["samples_ms"].values())
        low, high = row["se_tail_minus_plain_inplace_interval_ms"]
        assert low <= row["se_tail_minus_plain_inplace_ms"] <= high


def test_op_profile_script_writes_both_layouts(tmp_path):
    out = tmp_path / "ops.json"
    done = _script("op_profile.py", "--rounds", "1", "--calls", "1", "--batch", "1", "--image-size", "64", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert [row["layout"] for row in result["layouts"]] == ["nchw", "channels_last"] and result["machine"]["threads"] == 1
    assert "with the shared ops at the plain model's time" in done.stdout


def test_squeeze_routes_script_writes_every_shape_and_layout(tmp_path):
    out = tmp_path / "squeeze.json"
    done = _script("squeeze_routes.py", "--quick", "--repeats", "2", "--min-time", "0", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 2 * 4 and result["machine"]["threads"] == 1
    assert "Squeeze routes" in done.stdout


def test_block_rows_script_times_each_row_against_the_fastest_peer(tmp_path):
    out = tmp_path / "rows.json"
    args = ["--shapes", "2x32x8x8,2x16x12", "--layouts", "nchw", "--modes", "forward,forward_backward"]
    done = _script("block_rows.py", *args, "--repeats", "3", "--min-time", "0.001", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["allocator"] == "tuned" and result["machine"]["threads"] == 1
    rows = result["blocks"]
    assert [(row["shape"], row["mode"]) for row in rows] == [
        ([2, 32, 8, 8], "forward"), ([2, 32, 8, 8], "forward_backward"),
        ([2, 16, 12], "forward"), ([2, 16, 12], "forward_backward"),
    ]
    for row in rows:
        versus = row["senet_vs_fastest_peer"]
        fastest = min((name for name in ("timm", "torchvision", "monai") if name in row["results"]),
                      key=lambda name: row["results"][name]["median_s"])
        assert versus["peer"] == fastest
        low, high = versus["paired_median_ci95"]
        assert 0 < low <= versus["paired_median"] <= high
    assert "senet / " in done.stdout
    bad_runs = {
        "--layouts": ["--layouts", "nhwc"],
        "--modes": ["--modes", "backward"],
        "--shapes": ["--shapes", "2x32"],
        "channels_last": ["--shapes", "2x32x8"],  # a 1-D shape with the default layouts
    }
    for named, bad in zip(bad_runs, _scripts("block_rows.py", list(bad_runs.values()))):
        assert bad.returncode == 2 and named in bad.stderr, bad.stderr


def test_se_floor_script_writes_the_reads_and_the_small_ops(tmp_path):
    out = tmp_path / "floor.json"
    done = _script("se_floor.py", "--repeats", "3", "--batch", "1", "--image-size", "64", "--stream-mib", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["machine"]["threads"] == 1 and result["floor"]["read_bytes"] > 0
    assert "SE's reads per forward" in done.stdout


def test_tried_alternatives_script_checks_then_times_every_design(tmp_path):
    out = tmp_path / "tried.json"
    done = _script("tried_alternatives.py", "--quick", "--repeats", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert [(row["channels"], row["layer"]) for row in result["excitation_onednn"]] == [(32, "fc1"), (32, "fc2")]
    rows = list(result["excitation_onednn"]) + [result["body_inplace"][a] for a in ("default", "tuned")]
    for row in rows:
        low, high = row["paired_median_ci95"]
        assert 0 < low <= row["paired_median"] <= high
    assert "oneDNN / senet" in done.stdout and "tuned allocator" in done.stdout
    for key, design in (("folded_gates", "folded"), ("transposed_products", "transposed")):
        assert [row["layout"] for row in result[key]] == ["nchw", "channels_last"]
        for row in result[key]:
            low, high = row["paired_median_ci95"]
            assert 0 < low <= row["paired_median"] <= high
            assert row["se_path_ms"]["as_is"] > 0 and row["se_path_ms"][design] > 0
        assert f"{design} / as is" in done.stdout
    bad = _script("tried_alternatives.py", "--designs", "folded")
    assert bad.returncode == 2 and "--designs" in bad.stderr


def test_centred_sums_script_measures_precision_and_times_every_stage(tmp_path):
    import senet.layers.fused as fused

    original = fused._centred_sums
    out = tmp_path / "centred.json"
    done = _script("centred_sums.py", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert [row["offset"] for row in result["precision"]] == [0.0, 10.0, 100.0]
    far = result["precision"][-1]  # channels at 100 times their spread from zero
    assert far["centred"]["gamma"] <= 2 * far["plain"]["gamma"] < far["uncentred"]["gamma"]
    assert [row["shape"][1] for row in result["time"]] == [256, 512, 1024, 2048]
    for row in result["time"]:
        assert row["median_ms"]["centred"] > 0 and row["median_ms"]["uncentred"] > 0
    assert "paired difference" in done.stdout and fused._centred_sums is original


def test_model_pair_script_times_training_and_measures_memory(tmp_path):
    out = tmp_path / "pair.json"
    args = ["--repeats", "3", "--batch", "2", "--image-size", "64", "--layouts", "nchw", "--train", "--memory"]
    names = "senet_se,senet_plain,senet_plain_twin,senet_se_unfused"
    done = _script("model_pair.py", *args, "--names", names, "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())["models"]
    assert [(row["mode"], row["layout"]) for row in result["timings"]] == [("inference", "nchw"), ("train_step", "nchw")]
    for row in result["timings"]:
        assert row["results"]["senet_se"]["repeats"] == 3
        assert {"senet_se/senet_plain", "senet_plain_twin/senet_plain"} <= set(row["ratios"])  # with the A/A control
        assert row["results"]["senet_plain_twin"]["max_abs_error"] == 0.0
    saved = {pair: r["saved_bytes"] for pair, r in result["memory"]["ratios"].items()}
    # the fused tails keep no extra full-size activation; the unfused SE units keep each SE input
    assert 1.0 < saved["senet_se/senet_plain"] < saved["senet_se_unfused/senet_plain"]
    assert saved["senet_plain_twin/senet_plain"] == 1.0
    assert "saved for backward" in done.stdout
    bad = _script("model_pair.py", "--layouts", "nhwc")
    assert bad.returncode == 2 and "--layouts" in bad.stderr


def test_markdown_tables_script_reads_every_kind_of_result_file(tmp_path):
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    worker = results / "milan-cpu-1thread-tuned-blocks.json"  # one worker: a single run at its allocator setting
    if not worker.exists():
        pytest.skip(f"{worker} is not in this checkout")
    other = tmp_path / "squeeze.json"
    other.write_text(json.dumps({"machine": {}, "rows": []}))  # another script's result: a clear error
    files = [worker, results / "milan-cpu-1thread-pair.json", results / "cpu-1thread.json", other]
    done, pair, merged, bad = _scripts("markdown_tables.py", [[str(f)] for f in files])
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 32x") or line.startswith("| 8x")]
    assert len(rows) == len(json.loads(worker.read_text())["blocks"]) == 22
    assert done.stdout.startswith("### allocator: tuned")
    assert pair.returncode == 0, pair.stderr  # model_pair.py's output
    assert "| inference | nchw | " in pair.stdout and "senet_se/senet_plain" in pair.stdout
    assert merged.returncode == 0, merged.stderr  # run_bench.py: both settings
    assert "### allocator: default" in merged.stdout and "### allocator: tuned" in merged.stdout
    assert bad.returncode == 2 and "not a benchmark result" in bad.stderr
