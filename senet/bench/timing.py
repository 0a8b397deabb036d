"""Interleaved timing, robust summaries, and memory accounting (saved-for-backward bytes, peak bytes).

The machines these numbers come from are shared, so every comparison is made inside one run: the
candidates of a group are called in turn, repeat after repeat (in a fresh random order each repeat), and
ratios are taken between medians of the same run. The per-repeat (paired) ratios give the spread.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["interleaved", "summarize", "median_interval", "ratio", "saved_bytes", "peak_bytes"]


def _calibrate(fn: Callable[[], object], min_time: float, synchronize: Callable[[], object]) -> int:
    """How many calls make one sample last at least ``min_time`` seconds (after one warm-up call)."""
    fn()
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, math.ceil(min_time / once))


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    min_time: float = 0.0,
    seed: int = 0,
    synchronize: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` samples each, measured in turns.

    Each function is warmed up (and calibrated so that one sample lasts ``min_time``); then every repeat
    calls all of them in a fresh random order (``random.Random(seed)``, so a run is reproducible). A
    fixed cyclic order, even rotated, would have each function run right after the same other one in
    almost every repeat, and inherit the cache state that one leaves (on a CPU with a large L3, whether
    the input is still cached decides a memory-bound op's time). ``synchronize`` (e.g.
    ``torch.cuda.synchronize``) is called before and after each sample, so that asynchronous work is timed.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(fns)
    synchronize = synchronize or (lambda: None)
    inner = {name: _calibrate(fns[name], min_time, synchronize) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(seed)
    for _ in range(repeats):
        for name in rng.sample(names, len(names)):
            fn, n = fns[name], inner[name]
            synchronize()
            start = time.perf_counter()
            for _ in range(n):
                fn()
            synchronize()
            samples[name].append((time.perf_counter() - start) / n)
    return samples


def summarize(samples: list[float]) -> dict[str, float | int | list[float]]:
    """Median, quartiles, min and max of timing samples (seconds), and the samples themselves."""
    ordered = sorted(samples)
    q1, _, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else (ordered[0],) * 3
    return {
        "median_s": statistics.median(ordered),
        "q1_s": q1,
        "q3_s": q3,
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "repeats": len(ordered),
        "samples_s": list(samples),
    }


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval for the median: the order statistics ``x_(k)`` and
    ``x_(n+1-k)`` with the largest k such that ``P(Binomial(n, 1/2) < k) <= (1 - level) / 2`` (the
    interval then holds the median with probability at least ``level`` for independent samples). With too
    few values for that level (fewer than 6 at 95%) it is the whole range."""
    if not values:
        raise ValueError("values must not be empty")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    ordered, n = sorted(values), len(values)
    tail, k, below = (1.0 - level) / 2.0, 0, 0.0  # below = P(Binomial(n, 1/2) < k + 1)
    while k < n // 2:
        below += math.comb(n, k) / 2**n  # exact integers: no overflow for large n
        if below > tail:
            break
        k += 1
    k = max(k, 1)
    return ordered[k - 1], ordered[n - k]


def ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """``median(numerator) / median(denominator)``, with the median, the 95% interval of that median
    (:func:`median_interval`) and the range of the per-repeat (paired) ratios (the two calls of a repeat
    run back to back, so they share most of the machine's disturbance), and the ratio of the minimums (the
    least disturbed samples, a robust second opinion on a busy machine)."""
    paired = [a / b for a, b in zip(numerator, denominator)]
    low, high = median_interval(paired)
    return {
        "ratio": statistics.median(numerator) / statistics.median(denominator),
        "paired_median": statistics.median(paired),
        "paired_median_ci95": [low, high],
        "paired_min": min(paired),
        "paired_max": max(paired),
        "ratio_of_minimums": min(numerator) / min(denominator),
    }


def saved_bytes(step: Callable[[], object]) -> int:
    """Bytes autograd saves for backward while ``step()`` runs a forward pass: the sum over the unique
    storages of the tensors seen by ``torch.autograd.graph.saved_tensors_hooks`` (a storage saved by
    several ops, e.g. a block output saved by a ReLU and the next convolution, counts once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(storages.values())


def peak_bytes(step: Callable[[], object]) -> int:
    """Peak of the bytes held by tensors allocated while ``step()`` runs, above the level at its start.

    From the profiler's memory events (allocations and frees in time order, allocator-independent);
    a peak inside a single op (between its own allocation and free) is not seen.
    """
    with torch.autograd.profiler.profile(profile_memory=True) as prof:
        step()
    events = sorted(prof.function_events, key=lambda e: e.time_range.start)
    level = peak = 0
    for event in events:
        level += event.self_cpu_memory_usage
        peak = max(peak, level)
    return peak
