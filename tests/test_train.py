"""senet.train: config, checkpoints, the loop, exact resume after a kill, DDP under torchrun, masked 1-D models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from senet.data.bundle import Batch
from senet.layers import SqueezeExcite, conv_nd, lengths_to_mask
from senet.models.base import ClassifierModel
from senet.train import ModelSpec, TrainConfig, TrainingError, build_model, configure_se, fit, load_checkpoint
from senet.train.checkpoint import CHECKPOINT_FORMAT, atomic_write_text, capture_rng, restore_rng, save_checkpoint
from senet.train.ddp import DistContext
from senet.train.loop import train_epoch
from senet.train.model import MaskedSequenceModel, scale_lengths
from senet.train.weights import load_trained

REPO = Path(__file__).resolve().parents[1]
SE_SPEC = ModelSpec("resnet20_cifar", {"attention": "se", "reduction": 4})


def tiny_config(out: Path, **changes) -> TrainConfig:
    base = TrainConfig(model=SE_SPEC, out=out, epochs=2, batch_size=32, train_limit=64, val_limit=32,
                       progress=False, verbose=False)  # fmt: skip
    return replace(base, **changes)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


class Evil:
    """Not a tensor: a checkpoint holding one must be refused."""


# --- config and model spec ----------------------------------------------------------------------------


def test_model_spec_round_trips_as_plain_data():
    spec = ModelSpec("resnet20_cifar", {"attention": None, "reduction": (2, 4, 8), "se_stages": (0,)}, squeeze="max", gate="tanh")
    data = json.loads(json.dumps(spec.to_dict()))
    assert ModelSpec.from_dict(data) == spec
    with pytest.raises(ValueError, match="not a senet model spec"):
        ModelSpec.from_dict({"options": {}})


@pytest.mark.parametrize(
    ("change", "message"),
    [({"optimizer": "adam"}, "optimizer must be one of"), ({"epochs": 0}, "epochs must be a positive int"),
     ({"lr": -1.0}, "lr must be > 0"), ({"label_smoothing": 1.0}, "label_smoothing"), ({"device": "tpu"}, "device")],
)  # fmt: skip
def test_config_rejects_bad_values(tmp_path: Path, change, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **change)


def test_configure_se_sets_squeeze_and_gate_of_every_se_layer():
    model = build_model(replace(SE_SPEC, squeeze="max", gate="hard_sigmoid"))
    layers = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert len(layers) == 9
    assert all(m.squeeze == "max" and isinstance(m.gate, nn.Hardsigmoid) for m in layers)
    with pytest.raises(ValueError, match="need SE layers"):
        configure_se(build_model(ModelSpec("resnet20_cifar", {"attention": None})), gate="tanh")
    with pytest.raises(ValueError, match="gate must be one of"):
        configure_se(model, gate="softmax")


# --- checkpoints -------------------------------------------------------------------------------------


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        from senet.train.checkpoint import atomic_write

        atomic_write(target, lambda f: (f.write(b"half"), (_ for _ in ()).throw(RuntimeError("killed"))))
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_checkpoint_loading_refuses_code_and_corruption(tmp_path: Path):
    good = save_checkpoint(tmp_path / "good.pt", {"epoch": 3, "weights": torch.ones(2)})
    assert load_checkpoint(good)["epoch"] == 3
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refusing to load .*would run code .*Evil"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a senet training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_rng_states_round_trip(tmp_path: Path):
    import random

    import numpy as np

    generator = torch.Generator().manual_seed(5)
    saved = save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng(generator)})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    restore_rng(load_checkpoint(saved)["rng"], generator)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]
    assert torch.equal(first[3], again[3])


# --- the loop ----------------------------------------------------------------------------------------


def test_fit_writes_checkpoint_metrics_and_weights(tmp_path: Path):
    result = fit(tiny_config(tmp_path / "run"))
    out = tmp_path / "run"
    assert [row["epoch"] for row in result.history] == [1, 2]
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss") and len(csv_lines) == 3
    jsonl = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["val_acc"] for row in jsonl] == [row["val_acc"] for row in result.history]
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint["epoch"] == 2 and len(checkpoint["rng"]) == 1
    assert {"model", "optimizer", "scheduler", "scaler", "model_spec", "config", "history"} <= set(checkpoint)
    trained = load_trained(out / "model.safetensors")
    assert trained.input_shape == (1, 8, 8) and trained.spec == result.spec
    for key, value in result.model.state_dict().items():
        assert torch.equal(trained.model.state_dict()[key], value)
    with pytest.raises(ValueError, match="already holds a run"):
        fit(tiny_config(out))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(tiny_config(tmp_path / "fresh", resume=True))
    with pytest.raises(ValueError, match="cannot resume .*batch_size"):
        fit(tiny_config(out, resume=True, batch_size=16))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch):
    import torch.nn.functional as F

    real, calls = F.cross_entropy, {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1  # epoch 1: 2 training steps + 1 validation batch; the first step of epoch 2 diverges
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2/2 step 1"):
        fit(tiny_config(out))
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 2


def test_resume_after_a_kill_is_bit_identical(tmp_path: Path):
    """Kill a training process with SIGKILL after its first checkpoint, resume it, compare with a straight run."""
    from senet.cli import main

    args = ["train", "--model", "resnet20_cifar", "--attention", "se", "--reduction", "4", "--train-limit", "128",
            "--val-limit", "32", "--batch-size", "32", "--epochs", "3", "--no-progress", "--quiet", "--threads", "1"]  # fmt: skip
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "senet", *args, "--out", str(killed)], cwd=REPO, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    threads = torch.get_num_threads()
    try:
        deadline = time.monotonic() + 120
        while not (killed / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
        stopped_at = load_checkpoint(killed / "checkpoint.pt")["epoch"]
        assert 1 <= stopped_at < 3 and not (killed / "model.safetensors").exists()
        assert main([*args, "--out", str(killed), "--resume"]) == 0
        assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    finally:
        torch.set_num_threads(threads)
        process.stderr.close()
    resumed, straight = load_file(killed / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    numbers = lambda path: [{k: v for k, v in json.loads(line).items() if k not in ("epoch_time", "samples_per_s")}
                            for line in (path / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    assert numbers(killed) == numbers(tmp_path / "straight")


def test_ddp_on_two_cpu_ranks(tmp_path: Path):
    """torchrun, 2 processes, gloo: one step equals one single-process step on the same global batch;
    rank 0 alone writes; a run resumed under torchrun ends bit-identical to a straight one."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               str(REPO / "tests" / "ddp_worker.py"), str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    sys.path.insert(0, str(REPO / "tests"))
    try:
        from ddp_worker import one_step, step_model
    finally:
        sys.path.remove(str(REPO / "tests"))
    single = step_model()
    one_step(single, DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    distributed = torch.load(tmp_path / "ddp_step.pt", weights_only=True)
    assert not torch.equal(distributed["0.weight"], step_model().state_dict()["0.weight"])  # the step moved the weights
    for key, value in single.state_dict().items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-5, atol=1e-6)

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    checkpoint = load_checkpoint(resumed / "checkpoint.pt")
    assert checkpoint["epoch"] == 2 and len(checkpoint["rng"]) == 2  # one RNG state per rank, one file
    assert not any("rank" in p.name for p in resumed.rglob("*"))
    assert (resumed / "report.md").is_file()


# --- padded 1-D batches ------------------------------------------------------------------------------


class Pointwise(ClassifierModel):
    """1-D model of kernel-1 convolutions and SE: padding can reach outputs only through global pools."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial_dims, self.in_channels, self.num_classes, self.num_features = 1, 3, 4, 8
        self.stage_channels = (8,)
        self.stem = conv_nd(1)(3, 8, 1)
        self.stage = nn.Sequential(conv_nd(1)(8, 8, 1, stride=2), nn.ReLU(), SqueezeExcite(8, reduction=2))
        self.fc = nn.Linear(8, 4)

    def forward_stem(self, x):
        return self.stem(x)

    def stage_modules(self):
        return [self.stage]


def test_masked_model_ignores_padding_exactly():
    torch.manual_seed(0)
    model = MaskedSequenceModel(Pointwise()).eval()
    short, long = torch.randn(1, 3, 5), torch.randn(1, 3, 12)
    padded = torch.zeros(2, 3, 12)
    padded[0, :, :5], padded[1] = short[0], long[0]
    batch = model(padded, torch.tensor([5, 12]))
    alone = torch.cat([model(short, torch.tensor([5])), model(long, torch.tensor([12]))])
    torch.testing.assert_close(batch, alone)
    garbage = padded.clone()
    garbage[0, :, 5:] = 100.0
    torch.testing.assert_close(model(garbage, torch.tensor([5, 12])), batch)  # padding values do not matter
    assert not torch.allclose(model.model(padded)[0], alone[0])  # unmasked, the padding does change the output


def test_scale_lengths_follows_strided_downsampling():
    lengths = torch.tensor([1, 5, 12, 13])
    assert scale_lengths(lengths, 13, 7).tolist() == [1, 3, 7, 7]  # ceil(L/2) after a stride-2 conv
    assert lengths_to_mask(scale_lengths(lengths, 13, 7), 7).sum(1).tolist() == [1, 3, 7, 7]


def test_train_epoch_on_padded_batches_with_a_registry_model():
    model = MaskedSequenceModel(build_model(ModelSpec("seresnet20_cifar", {"spatial_dims": 1, "in_channels": 3, "num_classes": 4})))
    seen = []
    for layer in model.model.modules():
        if isinstance(layer, SqueezeExcite):
            layer.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["mask"].sum(1)), with_kwargs=True)
    batch = Batch(torch.randn(2, 3, 16), torch.tensor([0, 3]), torch.tensor([9, 16]))
    loader = [batch]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = train_epoch(model, loader, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                        DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))  # fmt: skip
    assert stats["count"] == 2 and len(seen) == 9
    assert seen[0].tolist() == [9, 16] and seen[-1].tolist() == [3, 4]  # lengths scaled to 16 -> 8 -> 4 positions
