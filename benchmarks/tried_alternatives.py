"""Four eval-path designs that were measured and not adopted, kept so that their numbers can be reproduced.

    OMP_NUM_THREADS=1 python benchmarks/tried_alternatives.py --threads 1 --out benchmarks/results/milan-cpu-1thread-tried.json

1. ``excitation_onednn``: each FC layer with its non-linearity as one oneDNN op,
   ``torch.ops.mkldnn._linear_pointwise(z, W, b, "relu" | "sigmoid")`` (one dispatch instead of two),
   against senet's ``relu(fc1(z))`` and ``sigmoid(fc2(y))`` (MKL's GEMM), batch 8, the SE widths of
   ResNet-50 (C = 256 ... 2048, r = 16). Paired median of oneDNN / senet per layer and width.
2. ``body_inplace``: senet's plain ResNet-50 in eval with each bottleneck's first two norms written over
   their convolution's fresh output (``senet.layers.fused._inference_norm(conv(x), bn, overwrite=True)``,
   as the units' tails already are), against the model as it is: batch 8, 224x224, NCHW, whole forwards,
   paired median ratio with its 95% interval, under glibc's default allocator and under senet's setting
   (one subprocess each, since the setting is per process).

3. ``folded_gates``: senet's SE-ResNet-50 in eval with each unit's first FC layer, the norm and (on the route
   through the 1x1 convolution) ``W3`` folded once into one small product, ``relu(A @ mean_p(h) + b)`` with
   ``A = W1 diag(alpha) W3`` (or ``W1 diag(alpha)`` where the output is pooled, at 7x7), the cache that the
   library declines (it goes stale silently after a write through ``.data``), against the model as it is:
   whole forwards, paired median ratio with its 95% interval, and the time spent in the SE units' eval-path
   functions per forward (those of :mod:`senet.bench.parts`, exclusive times summed; they include the gated
   norm and the addition and ReLU, which both designs make), per layout, this process's
   allocator (senet's setting). What caching could buy at most, measured rather than estimated.
4. ``transposed_products``: the same SE-ResNet-50 with every small product of the eval path taken with the
   weight as the left operand, ``W @ z^T`` (``addmm(b[:, None], W, z^T)``: ``W3``, fc1 and fc2, the norm of
   ``z`` as ``addcmul`` on the transposed descriptor), where ad hoc timings of single products had MKL
   faster with cold weights at two threads and slower hot (``results/milan-cpu-*-tried-transposed.json``).
   Timed as the third design. In both, the modules the design
   no longer calls (fc1 and fc2 here) lose their hooks' share of the part timer's overhead (a few
   microseconds per call), so the SE-path saving is slightly in the design's favour; the whole-forward ratio
   is not.

Every candidate's output is checked against the one it replaces before anything is timed. ``--quick``:
tiny sizes and 3 repeats, a smoke test whose timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from senet.bench.allocator import tune_allocator
from senet.bench.run import machine_info
from senet.bench.timing import interleaved, ratio


def excitation_onednn(*, repeats: int, quick: bool) -> list[dict]:
    """oneDNN's fused linear + non-linearity against senet's two ops, per FC layer and SE width."""
    pointwise = torch.ops.mkldnn._linear_pointwise
    rows = []
    for channels in (32,) if quick else (256, 512, 1024, 2048):
        torch.manual_seed(0)
        fc1, fc2 = nn.Linear(channels, channels // 16), nn.Linear(channels // 16, channels)
        z, y = torch.randn(8, channels), torch.randn(8, channels // 16)
        fns = {
            "fc1_senet": lambda: torch.relu(fc1(z)),
            "fc1_onednn": lambda: pointwise(z, fc1.weight, fc1.bias, "relu", [], ""),
            "fc2_senet": lambda: torch.sigmoid(fc2(y)),
            "fc2_onednn": lambda: pointwise(y, fc2.weight, fc2.bias, "sigmoid", [], ""),
        }
        with torch.inference_mode():
            for layer in ("fc1", "fc2"):
                torch.testing.assert_close(fns[f"{layer}_onednn"](), fns[f"{layer}_senet"](), rtol=1e-4, atol=1e-4)
            samples = interleaved(fns, repeats=repeats, min_time=0.0 if quick else 0.02)
        for layer in ("fc1", "fc2"):
            row = {"channels": channels, "layer": layer, "senet_us": 1e6 * statistics.median(samples[f"{layer}_senet"])}
            rows.append(row | ratio(samples[f"{layer}_onednn"], samples[f"{layer}_senet"]))
    return rows


def _body_inplace(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A bottleneck's body with its two norms written over their convolution's output (eval, no autograd)."""
    from senet.layers.fused import _inference_norm

    x = unit.act1(_inference_norm(unit.conv1(x), unit.bn1, overwrite=True))
    return unit.act2(_inference_norm(unit.conv2(x), unit.bn2, overwrite=True))


def body_inplace(*, repeats: int, quick: bool) -> dict:
    """senet's plain ResNet-50, its bodies as they are against bodies written in place (this process's allocator)."""
    from senet.models import create_model
    from senet.models.blocks import Bottleneck

    torch.manual_seed(0)
    model = create_model("resnet50").eval()
    units = [m for m in model.modules() if isinstance(m, Bottleneck)]
    x = torch.randn(1, 3, 64, 64) if quick else torch.randn(8, 3, 224, 224)

    def with_bodies(inplace: bool):
        def forward():
            for unit in units:  # an instance attribute shadows the class's method for this call only
                if inplace:
                    unit.branch_body = lambda x, unit=unit: _body_inplace(unit, x)
                else:
                    unit.__dict__.pop("branch_body", None)
            return model(x)

        return forward

    fns = {"as_is": with_bodies(False), "inplace": with_bodies(True)}
    with torch.inference_mode():
        torch.testing.assert_close(fns["inplace"](), fns["as_is"](), rtol=1e-5, atol=1e-5)
        samples = interleaved(fns, repeats=repeats)
    fns["as_is"]()  # leave the model as built
    return {"as_is_s": statistics.median(samples["as_is"])} | ratio(samples["inplace"], samples["as_is"])


def _folds(model: nn.Module) -> dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Per SE unit (keyed by its last norm), the folded first FC layer by input width: ``C_in`` (the route
    through the 1x1 convolution, ``A = W1 diag(alpha) W3``) and ``C`` (the pooled output, ``A = W1 diag(alpha)``);
    each as ``(A.t(), b)``."""
    from senet.layers.fused import _running_affine
    from senet.models.blocks import Bottleneck

    folds = {}
    with torch.no_grad():
        for unit in (m for m in model.modules() if isinstance(m, Bottleneck) and m.se is not None):
            conv, bn = unit.tail_modules()
            fc1, alpha, beta = unit.se.fc1, *_running_affine(bn)
            w1a = fc1.weight * alpha  # W1 diag(alpha) (h, C)
            b_out = fc1.bias + fc1.weight @ beta  # fc1(alpha * pooled_c + beta) = w1a @ pooled_c + b_out
            w3 = conv.weight.flatten(1)  # (C, C_in)
            b_in = b_out if conv.bias is None else b_out + w1a @ conv.bias
            folds[id(bn)] = {w3.shape[1]: ((w1a @ w3).t().contiguous(), b_in), w3.shape[0]: (w1a.t().contiguous(), b_out)}
    return folds


def _transposed_gates(pooled, bn, se, spatial_dims):
    """The gates from ``pooled`` ``(N, C)`` with every product ``W @ z^T`` (``z^T`` ``(C, N)``, a view)."""
    inv = torch.rsqrt(bn.running_var + bn.eps)
    inv = inv if bn.weight is None else inv * bn.weight  # alpha (C,)
    shift = -bn.running_mean * inv if bn.bias is None else bn.bias - bn.running_mean * inv  # beta (C,)
    z_t = torch.addcmul(shift.unsqueeze(1), pooled.t(), inv.unsqueeze(1))  # bn(z)^T (C, N)

    def product(linear: nn.Linear, x_t: torch.Tensor) -> torch.Tensor:
        weight, bias = linear.weight, linear.bias
        return torch.mm(weight, x_t) if bias is None else torch.addmm(bias.unsqueeze(1), weight, x_t)

    # (C, N) -> (N, C), made contiguous: transposed gates would send the gated norm's channels-last
    # addcmul down a slow strided loop (measured: 26-53 ms per forward)
    v = product(se.fc2, se.act(product(se.fc1, z_t))).t().contiguous()
    return se.gate(v.view(*v.shape, *([1] * spatial_dims)))  # (N, C, 1, ..., 1)


def _transposed_conv_squeeze(h, conv):
    """``mean_p(conv(h))`` ``(N, C)`` as ``(W @ mean_p(h)^T)^T``, a view of a ``(C, N)`` product."""
    import senet.layers.fused as fused

    weight, pooled_t = conv.weight.flatten(1), fused.squeeze_mean(h).t()  # (C, C_in), (C_in, N)
    product = torch.mm(weight, pooled_t) if conv.bias is None else torch.addmm(conv.bias.unsqueeze(1), weight, pooled_t)
    return product.t()


def _folded_design(model: nn.Module) -> dict:
    """``_conv_squeeze`` and ``_inference_gates`` with each unit's first FC layer, norm and ``W3`` folded once."""
    import senet.layers.fused as fused

    folds = _folds(model)

    def gates(pooled, bn, se, spatial_dims):  # pooled: mean_p(h) (N, C_in) or mean_p(c) (N, C)
        a_t, b = folds[id(bn)][pooled.shape[1]]
        v = se.fc2(se.act(torch.addmm(b, pooled, a_t)))  # (N, h) -> (N, C)
        return se.gate(v.view(*v.shape, *([1] * spatial_dims)))  # (N, C, 1, ..., 1)

    return {"_conv_squeeze": lambda h, conv: fused.squeeze_mean(h), "_inference_gates": gates}


# each gate design: the replacements of senet.layers.fused's eval-path functions it makes for a model
GATE_DESIGNS = {
    "folded": _folded_design,
    "transposed": lambda model: {"_conv_squeeze": _transposed_conv_squeeze, "_inference_gates": _transposed_gates},
}


def gate_design(design: str, *, repeats: int, quick: bool) -> list[dict]:
    """senet's SE-ResNet-50 with the gates of ``design`` (a key of :data:`GATE_DESIGNS`), against it as it is."""
    import random

    import senet.layers.fused as fused
    from senet.bench.parts import PartTimer, timed_parts
    from senet.models import create_model

    library = {"_conv_squeeze": fused._conv_squeeze, "_inference_gates": fused._inference_gates}
    rows = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = create_model("seresnet50").eval().to(memory_format=layout)
        x = (torch.randn(1, 3, 64, 64) if quick else torch.randn(8, 3, 224, 224)).contiguous(memory_format=layout)
        units = sum(1 for m in model.modules() if getattr(m, "fused_tail", False))
        replacement = GATE_DESIGNS[design](model)
        calls = [0]

        def counted_gates(*args, gates=replacement["_inference_gates"]):
            calls[0] += 1
            return gates(*args)

        replacement["_inference_gates"] = counted_gates
        designs = {"as_is": library, design: replacement}

        def forward(name: str) -> tuple[float, float, torch.Tensor]:
            """One forward with design ``name``: its seconds, the seconds spent in SE's eval path, the output."""
            timer = PartTimer()
            for attribute, fn in designs[name].items():
                setattr(fused, attribute, fn)
            try:
                with timed_parts({"se": model}, timer):
                    start = time.perf_counter()
                    out = model(x)
                    seconds = time.perf_counter() - start
            finally:
                for attribute, fn in library.items():
                    setattr(fused, attribute, fn)
            return seconds, sum(timer.totals.values()), out

        samples: dict[str, dict[str, list[float]]] = {d: {"forward": [], "se_path": []} for d in designs}
        with torch.no_grad():
            torch.testing.assert_close(forward(design)[2], forward("as_is")[2], rtol=1e-4, atol=1e-4)
            if calls[0] != units:  # every SE unit took the design's gates
                raise RuntimeError(f"the {design} gates ran in {calls[0]} of {units} SE units")
            order = random.Random(0)
            for _ in range(repeats):
                for name in order.sample(list(designs), len(designs)):
                    seconds, se_path, _ = forward(name)
                    samples[name]["forward"].append(seconds)
                    samples[name]["se_path"].append(se_path)
        se_path = {d: 1e3 * statistics.median(samples[d]["se_path"]) for d in designs}
        saved = [1e3 * (a - b) for a, b in zip(samples["as_is"]["se_path"], samples[design]["se_path"])]
        rows.append(
            {
                "layout": "channels_last" if layout is torch.channels_last else "nchw",
                "as_is_s": statistics.median(samples["as_is"]["forward"]),
                "se_path_ms": se_path,
                "se_path_saved_ms": statistics.median(saved),
            }
            | ratio(samples[design]["forward"], samples["as_is"]["forward"])
        )
    return rows


def _report_onednn(args: argparse.Namespace) -> list[dict]:
    rows = excitation_onednn(repeats=args.repeats, quick=args.quick)
    for row in rows:
        low, high = row["paired_median_ci95"]
        print(f"C={row['channels']:5d} {row['layer']}: senet {row['senet_us']:7.1f} us, oneDNN / senet {row['paired_median']:.3f} ({low:.3f}-{high:.3f})")
    return rows


def _report_bodies(args: argparse.Namespace) -> dict:
    """body_inplace under each allocator setting, one subprocess each (the setting is per process)."""
    rows = {}
    for allocator in ("default", "tuned"):
        command = [sys.executable, __file__, "--threads", str(args.threads), "--repeats", str(args.repeats), "--body-only", allocator]
        done = subprocess.run(command + (["--quick"] if args.quick else []), capture_output=True, text=True, check=True)
        row = rows[allocator] = json.loads(done.stdout)
        low, high = row["paired_median_ci95"]
        print(f"ResNet-50 bodies in place / as is, {allocator} allocator: {row['paired_median']:.4f} ({low:.4f}-{high:.4f})")
    return rows


def _report_gates(args: argparse.Namespace, design: str) -> list[dict]:
    rows = gate_design(design, repeats=args.repeats, quick=args.quick)
    for row in rows:
        low, high = row["paired_median_ci95"]
        path = row["se_path_ms"]
        print(f"SE-ResNet-50 {row['layout']}, {design} / as is: {row['paired_median']:.4f} ({low:.4f}-{high:.4f}); the units' "
              f"eval path {path['as_is']:.2f} -> {path[design]:.2f} ms per forward (paired saving {row['se_path_saved_ms']:.2f} ms)")
    return rows


# each gate design's result key
GATE_KEYS = {"folded_gates": "folded", "transposed_products": "transposed"}
# each design's result key and how it is run; the gate designs under senet's allocator setting
DESIGNS = {
    "excitation_onednn": _report_onednn,
    "body_inplace": _report_bodies,
    **{key: lambda args, design=design: _report_gates(args, design) for key, design in GATE_KEYS.items()},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated, among {','.join(DESIGNS)} (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test; the timings mean nothing)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--body-only", choices=("default", "tuned"), help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args()
    designs = [name.strip() for name in args.designs.split(",") if name.strip()]
    unknown = sorted(set(designs) - set(DESIGNS))
    if not designs or unknown:
        parser.error(f"--designs must list some of {', '.join(DESIGNS)}; got {args.designs!r}")
    torch.set_num_threads(args.threads)
    if args.body_only:
        if args.body_only == "tuned":
            tune_allocator()
        print(json.dumps(body_inplace(repeats=args.repeats, quick=args.quick)))
        return
    result: dict = {"machine": machine_info(args.threads)}
    for name in designs:
        if name in GATE_KEYS:
            tune_allocator()  # this process from here on: senet's setting
        result[name] = DESIGNS[name](args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
