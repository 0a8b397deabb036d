"""The ``senet`` command line. It only parses arguments and calls ``senet.train``, ``senet.data``,
``senet.analysis``, ``senet.bench`` and ``senet.interop``; the work lives there.

User errors (unknown names, missing data, bad checkpoints, unwritable folders, diverged training) end
with one line ``senet <command>: error: ...`` on stderr and exit status 1; set ``SENET_DEBUG=1`` to see
the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

TASKS = ("image", "audio", "volume")
DEFAULT_MODEL = "resnet20_cifar"  # every task: the same table builds 1-, 2- and 3-D networks


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every default, keeps the description's line breaks."""


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _reduction(text: str) -> int | tuple[int, ...]:
    values = _ints(text)
    return values[0] if len(values) == 1 else values


def _stages(text: str) -> tuple[int, ...] | None:
    if text == "all":
        return None
    return () if text == "none" else _ints(text)


def _default_out(command: str) -> Path:
    return Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"


# --- option groups ----------------------------------------------------------------------------------


def _add_model_options(parser: argparse.ArgumentParser, *, model: str | None, with_model: bool = True) -> None:
    group = parser.add_argument_group("model")
    if with_model:
        group.add_argument("--model", default=model, help="registry name (see `python -c 'import senet.models as m; print(m.list_models())'`)")
    group.add_argument("--attention", default=None, help="attention layer (a key of senet.layers.ATTENTION_LAYERS) or 'none' for the plain network; None: the builder's")
    group.add_argument("--reduction", type=_reduction, default=None, help="reduction ratio r, one int or one per stage ('16' or '8,16,16'); None: the builder's")
    group.add_argument("--integration", default=None, help="where SE goes: standard, pre, post, identity, inside; None: the builder's")
    group.add_argument("--se-stages", type=_stages, default="all", help="0-based stages with SE ('0,2'), 'all' or 'none'")
    group.add_argument("--squeeze", default=None, help="SE squeeze: avg, max or avgmax; None: the layer's (avg)")
    group.add_argument("--gate", default=None, help="SE gate: sigmoid, tanh, relu, one_plus_tanh, hard_sigmoid; None: the layer's (sigmoid)")


def _add_data_options(parser: argparse.ArgumentParser, *, data: str | None, task: bool) -> None:
    group = parser.add_argument_group("data")
    if task:
        group.add_argument("--task", choices=TASKS, default="image", help="image: 2-D digits; audio: 1-D FSDD (with --data-dir) or synthetic; volume: synthetic 3-D")
    group.add_argument("--data", default=data, help="digits, cifar10, cifar100, cifar10-jpeg, folder, fsdd, synthetic1d, synthetic3d" + ("; None: the task's" if task else ""))
    group.add_argument("--data-dir", type=Path, default=None, help="folder (or fsdd.npz file) for data read from disk; nothing is downloaded")
    group.add_argument("--image-size", type=int, default=32, help="side of images from --data folder")
    group.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop/flip/shift")
    group.add_argument("--train-limit", type=int, default=None, help="use only the first N training examples (quick runs)")
    group.add_argument("--val-limit", type=int, default=None, help="use only the first N validation examples (quick runs)")


def _add_training_options(parser: argparse.ArgumentParser, *, epochs: int, threads: int = 0) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs)
    group.add_argument("--batch-size", type=int, default=64, help="global batch (split over torchrun processes)")
    group.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    group.add_argument("--lr", type=float, default=0.1)
    group.add_argument("--momentum", type=float, default=0.9)
    group.add_argument("--weight-decay", type=float, default=5e-4)
    group.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine")
    group.add_argument("--step-size", type=int, default=30, help="epochs between decays of the step schedule")
    group.add_argument("--gamma", type=float, default=0.1, help="decay factor of the step schedule")
    group.add_argument("--label-smoothing", type=float, default=0.0)
    group.add_argument("--seed", type=int, default=0, help="random seed (the first one for several seeds)")
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    group.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    group.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="keep NCHW on CUDA")
    group.add_argument("--compile", action="store_true", help="torch.compile the model")
    group.add_argument("--workers", type=int, default=None, help="data-loader processes; None: 0 for in-memory data, else up to 4")
    group.add_argument("--threads", type=int, default=threads, help="CPU threads for torch (0: torch's default, one per core)"
                       + ("; 1 by default here: small models on tiny inputs gain nothing from more, and lose much on a busy machine" if threads == 1 else ""))
    group.add_argument("--resume", action="store_true", help="continue the run(s) in --out from their last checkpoint")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    group.add_argument("--quiet", dest="verbose", action="store_false", help="no per-epoch lines")
    group.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs the tensorboard package)")


def _add_out(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path, default=None, help=f"output folder; None: runs/{command}-<date>-<time>")


# --- handlers: turn arguments into calls ------------------------------------------------------------------


def _model_spec(args: argparse.Namespace, name: str):
    from senet.train import ModelSpec

    options: dict[str, object] = {}
    if args.attention is not None:
        options["attention"] = None if args.attention == "none" else args.attention
    for key in ("reduction", "integration"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.se_stages is not None:
        options["se_stages"] = args.se_stages
    return ModelSpec(name=name, options=options, squeeze=args.squeeze, gate=args.gate)


def _train_config(args: argparse.Namespace, spec, data: str, out: Path):
    from senet.train import TrainConfig

    return TrainConfig(
        model=spec, out=out, data=data, data_dir=args.data_dir, image_size=args.image_size, augment=args.augment,
        train_limit=args.train_limit, val_limit=args.val_limit, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        schedule=args.schedule, step_size=args.step_size, gamma=args.gamma, label_smoothing=args.label_smoothing,
        seed=args.seed, device=args.device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        workers=args.workers, resume=args.resume, progress=args.progress, verbose=args.verbose, tensorboard=args.tensorboard,
    )  # fmt: skip


def _data_name(args: argparse.Namespace) -> str:
    from senet.data import default_data

    return args.data or default_data(args.task, args.data_dir)


def _run_train(args: argparse.Namespace) -> int:
    from senet.train import train_and_report

    out = args.out or _default_out("train")
    result = train_and_report(_train_config(args, _model_spec(args, args.model), args.data, out), command=args.command_line)
    if args.verbose:
        print(f"final val acc {100 * result.final['val_acc']:.2f}%  ({result.bundle.note})\nreport: {out / 'report.md'}")
    return 0


def _seeds(args: argparse.Namespace) -> list[int]:
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    return list(range(args.seed, args.seed + args.seeds))


def _run_compare(args: argparse.Namespace) -> int:
    from senet.train import compare, compare_variants

    out = args.out or _default_out("compare")
    model = args.model
    data = _data_name(args)
    variants = compare_variants(model, reduction=args.reduction, relatives=args.relatives)
    config = _train_config(args, variants[0].spec, data, out)
    result = compare(config, variants, _seeds(args), out, command=args.command_line)
    print(result.table)
    print(f"note: {result.summaries[0].runs[0].bundle.note}\nreport: {result.report}\nresults: {result.results}")
    return 0


def _run_ablate(args: argparse.Namespace) -> int:
    from senet.train import ablate

    out = args.out or _default_out(f"ablate-{args.study}")
    model = args.model
    data = _data_name(args)
    config = _train_config(args, _model_spec_plain(model), data, out)
    result = ablate(config, args.study, model, _seeds(args), out, reduction=args.reduction, command=args.command_line)
    print(result.table)
    print(f"report: {result.report}\nresults: {result.results}")
    return 0


def _model_spec_plain(name: str):
    from senet.train import ModelSpec

    return ModelSpec(name=name, options={"attention": None})


def _run_analyze(args: argparse.Namespace) -> int:
    from senet.train import analyze

    spec = _model_spec(args, args.model) if args.model else None
    out = args.out or _default_out("analyze")
    report, _ = analyze(spec=spec, checkpoint=args.checkpoint, out=out, data=args.data, data_dir=args.data_dir,
                        input_shape=args.input_shape, val_limit=args.val_limit, command=args.command_line)  # fmt: skip
    print(f"report: {report}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from senet.train import export_model

    result = export_model(args.checkpoint, args.format, args.out, input_shape=args.input_shape, batch=args.batch,
                          rtol=args.rtol, atol=args.atol, onnx_exporter=args.onnx_exporter)  # fmt: skip
    print(f"wrote {result.path} ({result.format}); checked against PyTorch on input {result.input_shape}: "
          f"max |difference| {result.max_abs_diff:.3g}")  # fmt: skip
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    try:
        from senet.bench import format_results, run_benchmarks
    except ImportError as err:
        raise ValueError(f"senet bench needs the senet.bench module, which this installation lacks ({err})") from None
    suites = tuple(name.strip() for name in args.suites.split(",") if name.strip())
    results = run_benchmarks(quick=args.quick, threads=args.threads, out=args.out, suites=suites)
    print(format_results(results))
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    try:
        from senet.interop import convert_file
    except ImportError as err:
        raise ValueError(f"senet convert needs the senet.interop module, which this installation lacks ({err})") from None
    convert_file(args.src, args.dst, source=args.source, model=args.model, use_ema=not args.no_ema)
    print(f"wrote {args.dst}")
    return 0


# --- the parser ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="senet",
        description="Squeeze-and-Excitation networks: train, compare SE against plain, ablate, analyse, benchmark, export.\n"
        "Start with `senet compare` (SE vs plain on the embedded digits, a few minutes on 2 CPU cores).",
        formatter_class=_Formatter,
    )
    from senet import __version__

    parser.add_argument("--version", action="version", version=f"senet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=description, formatter_class=_Formatter)

    train = add("train", "train one model", "Train one model; writes checkpoint.pt (every epoch), metrics.csv/jsonl, "
                "model.safetensors, report.md and results.json to --out. Under torchrun it trains with DDP.")  # fmt: skip
    _add_model_options(train, model="seresnet20_cifar")
    _add_data_options(train, data="digits", task=False)
    _add_training_options(train, epochs=15)
    _add_out(train, "train")
    train.set_defaults(handler=_run_train)

    compare = add("compare", "SE vs plain (the main experiment)",
                  "The same network with and without SE (and --relatives), several seeds each, same data and schedule.\n"
                  "With no arguments: resnet20_cifar on scikit-learn's embedded digits, 3 seeds x 10 epochs.")  # fmt: skip
    compare.add_argument("--model", default=DEFAULT_MODEL, help="registry name of the network (1-, 2- or 3-D after the task)")
    compare.add_argument("--reduction", type=_reduction, default=None, help="SE reduction ratio r; None: the builder's (16, as in the paper)")
    compare.add_argument("--relatives", nargs="*", default=[], help="also compare these attention layers (eca, cbam, ...)")
    compare.add_argument("--seeds", type=int, default=3, help="number of seeds (--seed, --seed+1, ...)")
    _add_data_options(compare, data=None, task=True)
    _add_training_options(compare, epochs=10, threads=1)
    _add_out(compare, "compare")
    compare.set_defaults(handler=_run_compare)

    ablate = add("ablate", "the SENet paper's ablation studies", "One ablation study at small scale, one table like the paper's.")
    ablate.add_argument("--study", required=True, choices=("reduction", "squeeze", "gate", "integration", "stages"))
    ablate.add_argument("--model", default=DEFAULT_MODEL, help="registry name of the network")
    ablate.add_argument("--reduction", type=_reduction, default=None, help="r of the non-reduction studies; None: the builder's")
    ablate.add_argument("--seeds", type=int, default=2, help="number of seeds")
    _add_data_options(ablate, data=None, task=True)
    _add_training_options(ablate, epochs=10, threads=1)
    _add_out(ablate, "ablate")
    ablate.set_defaults(handler=_run_ablate)

    analyze = add("analyze", "cost report and gate statistics", "Cost report (FLOPs, parameters, SE crossover per block) "
                  "of --model or --checkpoint; with --data also the gate statistics and plots on its validation split.")  # fmt: skip
    _add_model_options(analyze, model=None)
    analyze.add_argument("--checkpoint", type=Path, default=None, help="trained weights: checkpoint.pt or model.safetensors")
    analyze.add_argument("--data", default=None, help="data set for gate statistics (see senet train --help)")
    analyze.add_argument("--data-dir", type=Path, default=None)
    analyze.add_argument("--val-limit", type=int, default=None, help="use only the first N validation examples")
    analyze.add_argument("--input-shape", type=_ints, default=None, help="one example's C,H,W for the cost report; None: the data's, the checkpoint's, or 3,32,32 (_cifar) / 3,224,224")
    _add_out(analyze, "analyze")
    analyze.set_defaults(handler=_run_analyze)

    bench = add("bench", "run the benchmarks", "Run senet's performance benchmarks and print their table.")
    bench.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    bench.add_argument("--threads", type=int, default=1, help="CPU threads")
    bench.add_argument("--out", type=Path, default=None, help="also write the results here")
    bench.add_argument("--suites", default="blocks,models", help="comma-separated: blocks (SE block), models (whole models), units (SE-ResNet-50 and ResNet-50 unit by unit and in segments: where SE's time goes), parts (the same models' eval paths part by part: squeeze, W3 product, excitation layers, gated norm), tails (the bottleneck tails with the caches cold), ops (the profiler's per-op times of both models), squeeze (mean against one BLAS product per map shape: which squeeze route is faster here), floor (the bytes SE's eval path reads per forward and their memory time against the 1%% budget, what a small op costs right after a large one, and SE's small products against a stream of their weights), gpu (Triton kernels and model pairs on a CUDA device; skipped without one)")
    bench.set_defaults(handler=_run_bench)

    export = add("export", "export a trained model", "Export to ONNX (checked with onnxruntime), TorchScript (torch.jit.trace) "
                 "or safetensors, compared with PyTorch on a random batch; a mismatch fails and writes nothing.")  # fmt: skip
    export.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt or model.safetensors written by senet")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript", "safetensors"))
    export.add_argument("--out", type=Path, default=None, help="target file; None: the checkpoint's name with the format's suffix")
    export.add_argument("--input-shape", type=_ints, default=None, help="one example's C,H,W; None: the training data's")
    export.add_argument("--batch", type=int, default=2, help="batch used for tracing (the check uses batch+1)")
    export.add_argument("--rtol", type=float, default=1e-4)
    export.add_argument("--atol", type=float, default=1e-5)
    export.add_argument("--onnx-exporter", choices=("dynamo", "legacy"), default="dynamo", help="torch.export-based (default) or the deprecated TorchScript-based ONNX exporter (faster)")
    export.set_defaults(handler=_run_export)

    convert = add("convert", "convert peer weights", "Convert a timm, torchvision or MONAI state dict to senet's layout.")
    convert.add_argument("--from", dest="source", required=True, choices=("timm", "torchvision", "monai"))
    convert.add_argument("--model", required=True, help="senet registry name of the target model")
    convert.add_argument("--in", dest="src", type=Path, required=True, help="source weights file")
    convert.add_argument("--out", dest="dst", type=Path, required=True, help="target weights file")
    convert.add_argument(
        "--no-ema",
        action="store_true",
        help="take a training checkpoint's state_dict even where it holds EMA weights (timm's use_ema=False)",
    )
    convert.set_defaults(handler=_run_convert)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``senet`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "senet " + " ".join(shlex.quote(a) for a in argv)
    from senet.train import TrainingError

    try:
        if getattr(args, "threads", 0) and args.command != "bench":
            import torch

            torch.set_num_threads(args.threads)
        if args.command != "bench":  # bench measures the default and the tuned allocator in workers of its own
            from senet.bench.allocator import tune_allocator

            tune_allocator()  # glibc: keep large freed tensors instead of unmapping them (see docs/performance)
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"senet {args.command}: interrupted; finished epochs are in the checkpoint (continue with --resume)", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, TrainingError) as err:
        if os.environ.get("SENET_DEBUG"):
            raise
        print(f"senet {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
