"""Where SE's inference time goes, part by part: senet's own eval-path functions timed inside whole forwards
of its SE-ResNet-50 and ResNet-50 (``senet bench --suites parts``, ``benchmarks/unit_times.py --parts``).

In eval without autograd an SE bottleneck ends in :func:`senet.layers.fused.conv_bn_se_add_relu`, a chain
of small functions; a plain one in :func:`~senet.layers.fused.conv_bn_add_relu`. For the duration of the
run each of those functions, and each module of the excitation, is wrapped in a timer, and every part is
given its exclusive time per forward (its time less that of the parts it calls), the two models' forwards
interleaved:

- ``squeeze``: ``squeeze_mean`` (of the 1x1 convolution's input ``h`` from 56x56 to 14x14, of ``c`` at 7x7);
- ``w3_product``: the rest of ``_conv_squeeze``, the product ``W3 @ mean_p(h)``;
- ``norm_of_z``: the rest of ``_inference_gates``, the norm of the squeezed ``(N, C)`` numbers;
- ``fc1``, ``act``, ``fc2``, ``gate``: the excitation's modules; ``excite_rest``: the rest of ``excite``;
- ``gated_norm`` / ``norm``: ``_inference_norm`` with / without gates, the SE / plain unit's pass over ``c``;
- ``add_relu``: ``add_relu_``, the addition and ReLU in one pass (both models);
- ``other``: the rest of the forward (the convolutions, the bodies' norms, stem, head, and the calls that
  lead to the parts).

The timers add about a microsecond per call, and hooks on the excitation's modules take them off torch's
fast call path; SE's parts are therefore slight overestimates. Instrumented outputs are checked against
the same model's output without timers before anything is timed, and the originals are put back after.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

import senet.layers.fused as fused
from senet.bench.units import UnitCase, case_fields, check_repeats, pair_and_input
from senet.layers.se import SqueezeExcite

__all__ = ["PARTS", "PartTimer", "timed_parts", "run_parts_case", "parts_table"]

PARTS: tuple[str, ...] = (
    "squeeze", "w3_product", "norm_of_z", "fc1", "act", "fc2", "gate", "excite_rest", "gated_norm", "norm", "add_relu",
)
_EXCITE_MODULES = ("fc1", "act", "fc2", "gate")


class PartTimer:
    """Exclusive time per part: each part's seconds less those of the parts it calls (a stack of open parts)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._open: list[list] = []  # [part, start, seconds spent in the parts it called]

    def enter(self, part: str) -> None:
        self._open.append([part, time.perf_counter(), 0.0])

    def exit(self) -> None:
        part, start, inner = self._open.pop()
        elapsed = time.perf_counter() - start
        self.totals[part] += elapsed - inner
        if self._open:
            self._open[-1][2] += elapsed

    def wrap(self, fn: Callable, part: str | Callable[..., str]) -> Callable:
        """``fn`` timed as the part ``part``, or as the part named by ``part(*args, **kwargs)`` for a callable."""

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.enter(part if isinstance(part, str) else part(*args, **kwargs))
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit()

        return timed


def _norm_part(c, bn, gates=None, **_) -> str:
    return "norm" if gates is None else "gated_norm"


# the eval path's functions, looked up by name in senet.layers.fused at call time, and the part each is
_FUSED_PARTS: dict[str, str | Callable[..., str]] = {
    "squeeze_mean": "squeeze",
    "_conv_squeeze": "w3_product",
    "_inference_gates": "norm_of_z",
    "_inference_norm": _norm_part,
    "add_relu_": "add_relu",
}


@contextmanager
def timed_parts(models: dict[str, nn.Module], timer: PartTimer) -> Iterator[None]:
    """The eval path's functions and the excitation's modules timed by ``timer`` inside the block; restored after."""
    originals = {name: getattr(fused, name) for name in _FUSED_PARTS}
    excite = SqueezeExcite.excite
    handles = []
    try:
        for name, part in _FUSED_PARTS.items():
            setattr(fused, name, timer.wrap(originals[name], part))
        SqueezeExcite.excite = timer.wrap(excite, "excite_rest")
        for model in models.values():
            for se in (m for m in model.modules() if isinstance(m, SqueezeExcite)):
                for name in _EXCITE_MODULES:
                    module = getattr(se, name)
                    handles.append(module.register_forward_pre_hook(lambda m, args, name=name: timer.enter(name)))
                    handles.append(module.register_forward_hook(lambda m, args, out: timer.exit()))
        yield
    finally:
        for handle in handles:
            handle.remove()
        SqueezeExcite.excite = excite
        for name, fn in originals.items():
            setattr(fused, name, fn)


def run_parts_case(case: UnitCase, *, repeats: int) -> dict:
    """Time senet's SE-ResNet-50 and ResNet-50 part by part (``repeats`` >= 3 forwards each, interleaved).

    Returns ``forward_ms`` (median whole forwards per model), ``parts_ms`` (per model, the median exclusive
    milliseconds per forward of every part of :data:`PARTS` and of ``other``), ``se_minus_plain_ms`` (per part,
    the median over forwards of SE - plain, paired by repeat), ``parts_se_minus_plain_ms`` (the median over
    forwards of SE - plain summed over :data:`PARTS`: what SE's own path costs) and the samples in seconds
    (``samples_s``).
    """
    check_repeats(repeats)
    models, x = pair_and_input(case)
    samples = {key: {part: [] for part in (*PARTS, "other", "forward")} for key in models}
    timer = PartTimer()
    with torch.no_grad():
        reference = {key: model(x) for key, model in models.items()}  # also the warm-up
        with timed_parts(models, timer):
            for key, model in models.items():
                torch.testing.assert_close(model(x), reference[key], rtol=0, atol=0)  # the timers change nothing
            for repeat in range(repeats):
                for key in list(models) if repeat % 2 == 0 else list(models)[::-1]:
                    timer.totals.clear()
                    start = time.perf_counter()
                    models[key](x)
                    forward = time.perf_counter() - start
                    for part in PARTS:
                        samples[key][part].append(timer.totals.get(part, 0.0))
                    samples[key]["other"].append(forward - sum(timer.totals.values()))
                    samples[key]["forward"].append(forward)
    medians = {key: {part: 1e3 * statistics.median(v) for part, v in series.items()} for key, series in samples.items()}
    return {
        **case_fields(case, repeats),
        "forward_ms": {key: medians[key].pop("forward") for key in models},
        "parts_ms": medians,
        "se_minus_plain_ms": {
            part: 1e3 * statistics.median(a - b for a, b in zip(samples["se"][part], samples["plain"][part]))
            for part in (*PARTS, "other")
        },
        "parts_se_minus_plain_ms": 1e3 * statistics.median(
            sum(samples["se"][part][i] - samples["plain"][part][i] for part in PARTS) for i in range(repeats)
        ),
        "samples_s": samples,
    }


def parts_table(result: dict) -> list[str]:
    """The printed table of :func:`run_parts_case`'s result: per part, SE, plain and SE - plain."""
    parts, diff, forward = result["parts_ms"], result["se_minus_plain_ms"], result["forward_ms"]
    lines = [
        f"Parts ({result['layout']}, batch {result['batch']}, {result['image_size']}x{result['image_size']}, "
        f"{result['repeats']} repeats): median ms per forward: SE {forward['se']:.1f}, plain {forward['plain']:.1f}",
        f"{'part':12s} {'SE':>9s} {'plain':>9s} {'SE - plain':>11s}",
    ]
    for part in (*PARTS, "other"):
        lines.append(f"{part:12s} {parts['se'][part]:9.2f} {parts['plain'][part]:9.2f} {diff[part]:11.2f}")
    lines.append(f"SE - plain summed over the parts (median over forwards): {result['parts_se_minus_plain_ms']:.2f} ms")
    return lines
