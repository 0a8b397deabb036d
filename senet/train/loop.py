"""The training loop: :func:`fit` trains one model as a :class:`TrainConfig` says, checkpointing every epoch.

Resume is exact: a checkpoint holds the model, optimizer, scheduler, grad scaler, every rank's random
generator states (torch, CUDA, numpy, python, the loader's) and the history, and it is written at the
end of an epoch, so continuing from it replays the remaining epochs bit for bit (on CPU).
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from senet.data import DataBundle, build_data, make_loader
from senet.layers.nd import channels_last_format
from senet.models.registry import check_state_dict
from senet.train.checkpoint import capture_rng, check_writable, load_checkpoint, restore_rng, save_checkpoint
from senet.train.config import ModelSpec, TrainConfig
from senet.train.ddp import (
    DistContext,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    setup_distributed,
    teardown_distributed,
)
from senet.train.metrics import TensorBoardLog, format_epoch, write_metrics
from senet.train.model import MaskedSequenceModel, build_model, forward_batch
from senet.train.optim import build_optimizer, build_scheduler
from senet.train.weights import save_weights

__all__ = ["TrainingError", "RunResult", "fit", "spec_for_data", "seed_everything", "train_epoch", "evaluate"]

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "model.safetensors"
# What must not change between a run and its resumption (epochs may grow; the schedule then differs).
RESUME_KEYS = ("data", "batch_size", "optimizer", "schedule", "seed", "train_limit", "augment")


class TrainingError(RuntimeError):
    """A run that cannot go on (its loss diverged); every file written before stays as it was."""


@dataclass
class RunResult:
    """What one run produced; ``model`` (trained, on CPU) and ``bundle`` are for callers, not for JSON."""

    config: TrainConfig
    spec: ModelSpec
    history: list[dict[str, float]]
    params: int
    bundle: DataBundle
    model: nn.Module = field(repr=False)
    resumed_from: int = 0

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]

    @property
    def best_val_acc(self) -> float:
        return max(row["val_acc"] for row in self.history)

    @property
    def mean_epoch_time(self) -> float:
        return float(np.mean([row["epoch_time"] for row in self.history]))

    def to_dict(self) -> dict[str, object]:
        return {
            "model_spec": self.spec.to_dict(),
            "config": self.config.to_dict(),
            "data": self.bundle.name,
            "data_note": self.bundle.note,
            "input_shape": list(self.bundle.input_shape),
            "params": self.params,
            "final_val_acc": self.final["val_acc"],
            "final_val_loss": self.final["val_loss"],
            "best_val_acc": self.best_val_acc,
            "mean_epoch_time": self.mean_epoch_time,
            "resumed_from_epoch": self.resumed_from,
            "history": self.history,
        }


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def spec_for_data(spec: ModelSpec, bundle: DataBundle) -> ModelSpec:
    """``spec`` with ``num_classes``, ``in_channels`` and ``spatial_dims`` taken from the data (given values must agree)."""
    facts = {"num_classes": bundle.num_classes, "in_channels": bundle.in_channels, "spatial_dims": bundle.spatial_dims}
    for key, value in facts.items():
        if key in spec.options and spec.options[key] != value:
            raise ValueError(f"{key}={spec.options[key]} does not fit data {bundle.name!r}, which needs {key}={value}")
    return replace(spec, options={**spec.options, **facts})


def _check_finite(loss: torch.Tensor, context: DistContext, where: str) -> None:
    bad = (~torch.isfinite(loss.detach())).float().reshape(1)
    if float(all_reduce_sum(bad, context)) > 0:
        raise TrainingError(f"loss became {loss.item()} at {where}: training diverged (try a lower --lr)")


def _to_device(batch, device: torch.device, memory_format: torch.memory_format | None):
    inputs = batch.inputs.to(device, non_blocking=True)
    if memory_format is not None:
        inputs = inputs.contiguous(memory_format=memory_format)
    lengths = None if batch.lengths is None else batch.lengths.to(device)
    return inputs, batch.targets.to(device, non_blocking=True), lengths


def train_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    context: DistContext,
    *,
    label_smoothing: float = 0.0,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format | None = None,
    progress: bool = False,
    where: str = "epoch",
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean loss, accuracy and example count over all ranks."""
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=context.device)  # loss sum, correct, examples
    bar = tqdm(loader, desc=where, leave=False, disable=not progress, dynamic_ncols=True, file=sys.stderr)
    for step, batch in enumerate(bar):
        inputs, targets, lengths = _to_device(batch, context.device, memory_format)
        with torch.autocast(context.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = forward_batch(model, inputs, lengths)  # (N, classes)
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        _check_finite(loss, context, f"{where} step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = targets.shape[0]
        totals += torch.stack([loss.detach().double() * n, (logits.argmax(1) == targets).sum().double(), totals.new_tensor(n)])
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    totals = all_reduce_sum(totals, context)
    return {"loss": float(totals[0] / totals[2]), "acc": float(totals[1] / totals[2]), "count": float(totals[2])}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    context: DistContext,
    *,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format | None = None,
) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing) and accuracy over every example of ``loader`` on all ranks."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=context.device)
    for batch in loader:
        inputs, targets, lengths = _to_device(batch, context.device, memory_format)
        with torch.autocast(context.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = forward_batch(model, inputs, lengths)
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        totals += torch.stack([loss.double(), (logits.argmax(1) == targets).sum().double(), totals.new_tensor(targets.shape[0])])
    totals = all_reduce_sum(totals, context)
    return {"loss": float(totals[0] / totals[2]), "acc": float(totals[1] / totals[2])}


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _prepare_out(config: TrainConfig, context: DistContext) -> Path:
    """Check ``config.out`` before anything runs (on every rank, so that all of them stop together)."""
    checkpoint = config.out / CHECKPOINT_NAME
    check_writable(config.out)
    if checkpoint.exists() and not config.resume:
        raise ValueError(f"{config.out} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it or choose another --out")
    if config.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"nothing to resume: {checkpoint} does not exist")
    return checkpoint


def _check_resumable(checkpoint: dict, config: TrainConfig, spec: ModelSpec, context: DistContext, path: Path) -> None:
    saved_spec = ModelSpec.from_dict(checkpoint.get("model_spec"))
    if saved_spec != spec:
        raise ValueError(f"checkpoint {path} was written for model {saved_spec.to_dict()}, not {spec.to_dict()}")
    saved, current = checkpoint.get("config", {}), config.to_dict()
    changed = [f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in RESUME_KEYS if saved.get(k) != current[k]]
    if changed:
        raise ValueError(f"cannot resume {path} with different settings ({'; '.join(changed)})")
    if len(checkpoint["rng"]) != context.world_size:
        raise ValueError(f"checkpoint {path} was written by {len(checkpoint['rng'])} process(es); resume with as many, not {context.world_size}")


@dataclass
class _Live:
    """The objects of a run in progress."""

    spec: ModelSpec
    bundle: DataBundle
    raw: nn.Module  # the model itself (checkpointed)
    model: nn.Module  # what is called: raw, masked for padded data, DDP-wrapped, compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format | None
    params: int


def _build(config: TrainConfig, context: DistContext) -> _Live:
    """Data, model (wrapped for padding, DDP and compile as needed), optimizer, schedule, scaler and loaders."""
    if config.batch_size % context.world_size:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes ({context.world_size})")
    seed_everything(config.seed + context.rank)
    bundle = build_data(config.data, data_dir=config.data_dir, augment=config.augment, image_size=config.image_size,
                        train_limit=config.train_limit, val_limit=config.val_limit)  # fmt: skip
    spec = spec_for_data(config.model, bundle)
    device = context.device
    raw = build_model(spec)
    params = sum(p.numel() for p in raw.parameters())
    if context.distributed and device.type == "cuda":
        raw = nn.SyncBatchNorm.convert_sync_batchnorm(raw)  # gloo has no SyncBatchNorm: CPU ranks keep per-rank BN
    memory_format = channels_last_format(bundle.spatial_dims) if config.channels_last and device.type == "cuda" else None
    raw = raw.to(device, memory_format=memory_format) if memory_format else raw.to(device)
    model: nn.Module = MaskedSequenceModel(raw) if bundle.variable_length else raw
    if context.distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    optimizer, amp_dtype = build_optimizer(raw, config), _amp_dtype(config, device)
    workers = config.workers if config.workers is not None else (0 if bundle.in_memory else min(4, os.cpu_count() or 1))
    loader_args = dict(seed=config.seed, variable_length=bundle.variable_length, rank=context.rank,
                       world_size=context.world_size, workers=workers, pin_memory=device.type == "cuda")  # fmt: skip
    per_rank = config.batch_size // context.world_size
    return _Live(
        spec=spec, bundle=bundle, raw=raw, model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, config),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        train_loader=make_loader(bundle.train, batch_size=per_rank, train=True, **loader_args),
        val_loader=make_loader(bundle.val, batch_size=max(per_rank, 256), train=False, **loader_args),
        amp_dtype=amp_dtype, memory_format=memory_format, params=params,
    )  # fmt: skip


def _resume(live: _Live, config: TrainConfig, context: DistContext, path: Path) -> tuple[list[dict[str, float]], int]:
    """Load every state from the checkpoint at ``path``; returns the history and the last finished epoch."""
    checkpoint = load_checkpoint(path)
    _check_resumable(checkpoint, config, live.spec, context, path)
    check_state_dict(live.raw, checkpoint["model"])
    live.raw.load_state_dict(checkpoint["model"])
    live.optimizer.load_state_dict(checkpoint["optimizer"])
    live.scheduler.load_state_dict(checkpoint["scheduler"])
    live.scaler.load_state_dict(checkpoint["scaler"])
    restore_rng(checkpoint["rng"][context.rank], live.train_loader.generator)
    return list(checkpoint["history"]), int(checkpoint["epoch"])


def _run_epoch(live: _Live, config: TrainConfig, context: DistContext, epoch: int) -> dict[str, float]:
    """Train one epoch, evaluate, step the schedule; returns the epoch's metrics row."""
    live.train_loader.sampler.set_epoch(epoch)
    where = f"epoch {epoch}/{config.epochs}"
    began = time.perf_counter()
    train = train_epoch(live.model, live.train_loader, live.optimizer, live.scaler, context,
                        label_smoothing=config.label_smoothing, amp_dtype=live.amp_dtype, memory_format=live.memory_format,
                        progress=config.progress and context.is_main, where=where)  # fmt: skip
    epoch_time = time.perf_counter() - began
    val = evaluate(live.model, live.val_loader, context, amp_dtype=live.amp_dtype, memory_format=live.memory_format)
    lr = live.optimizer.param_groups[0]["lr"]
    live.scheduler.step()
    return {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"], "val_loss": val["loss"],
            "val_acc": val["acc"], "lr": lr, "epoch_time": epoch_time, "samples_per_s": train["count"] / epoch_time}  # fmt: skip


def _save(live: _Live, config: TrainConfig, context: DistContext, path: Path, history: list[dict[str, float]]) -> None:
    """Checkpoint the end of the last epoch in ``history`` (every rank's RNG, written by rank 0)."""
    rng_states = all_gather_objects(capture_rng(live.train_loader.generator), context)
    if not context.is_main:
        return
    save_checkpoint(path, {
        "epoch": history[-1]["epoch"], "model": live.raw.state_dict(), "optimizer": live.optimizer.state_dict(),
        "scheduler": live.scheduler.state_dict(), "scaler": live.scaler.state_dict(), "rng": rng_states,
        "model_spec": live.spec.to_dict(), "input_shape": list(live.bundle.input_shape), "config": config.to_dict(),
        "history": history,
    })  # fmt: skip
    write_metrics(config.out, history)


def fit(config: TrainConfig) -> RunResult:
    """Train as ``config`` says (on every rank under torchrun) and return the run's result.

    Under torchrun the process group is joined here (and left again, unless the caller had joined it).
    """
    context = setup_distributed(config.device)
    try:
        return _fit(config, context)
    finally:
        teardown_distributed(context)


def _fit(config: TrainConfig, context: DistContext) -> RunResult:
    checkpoint_path = _prepare_out(config, context)
    board = TensorBoardLog(config.out) if config.tensorboard and context.is_main else None
    try:
        live = _build(config, context)
        history, start = _resume(live, config, context, checkpoint_path) if config.resume else ([], 0)
        _train(live, config, context, checkpoint_path, history, start, board)
    finally:
        if board is not None:
            board.close()
    if not history:
        raise ValueError(f"{config.out} holds no finished epoch to report")
    if context.is_main:
        save_weights(config.out / WEIGHTS_NAME, live.raw, live.spec, live.bundle.input_shape)
    barrier(context)
    return RunResult(config=config, spec=live.spec, history=history, params=live.params, bundle=live.bundle,
                     model=live.raw.cpu(), resumed_from=start)  # fmt: skip


def _say(line: str) -> None:
    tqdm.write(line)  # above any progress bar
    sys.stdout.flush()


def _train(live: _Live, config: TrainConfig, context: DistContext, checkpoint_path: Path,
           history: list[dict[str, float]], start: int, board: TensorBoardLog | None) -> None:  # fmt: skip
    """Epochs ``start + 1 .. config.epochs``, each followed by a checkpoint, metrics files and a console line."""
    say = _say if config.verbose and context.is_main else (lambda _line: None)
    if start:
        say(f"resuming {config.out} after epoch {start}/{config.epochs}")
    for epoch in range(start + 1, config.epochs + 1):
        history.append(_run_epoch(live, config, context, epoch))
        _save(live, config, context, checkpoint_path, history)
        if board is not None:
            board.log(history[-1])
        say(format_epoch(history[-1], config.epochs))
        barrier(context)
