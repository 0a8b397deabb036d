"""Run under ``torchrun --nproc_per_node 2`` by tests/test_train.py (not collected by pytest).

1. One DDP training step of a model without batch-dependent layers on 2 ranks; rank 0 saves the weights.
2. ``senet train`` (the CLI) under the same process group: 2 epochs straight, and 1 epoch then ``--resume``
   to 2 epochs; the test compares the two final weight files.
"""

import sys
from pathlib import Path

import torch
import torch.nn as nn

from senet.cli import main
from senet.data import make_loader
from senet.data.tensors import ArrayDataset
from senet.layers import conv_nd
from senet.train.ddp import setup_distributed, teardown_distributed
from senet.train.loop import train_epoch


def step_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(conv_nd(2)(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def step_data() -> ArrayDataset:
    generator = torch.Generator().manual_seed(1)
    return ArrayDataset(torch.randn(16, 1, 8, 8, generator=generator), torch.randint(0, 10, (16,), generator=generator))


def one_step(model: nn.Module, context) -> None:
    loader = make_loader(step_data(), batch_size=16 // context.world_size, train=True, seed=0,
                         rank=context.rank, world_size=context.world_size)  # fmt: skip
    loader.sampler.set_epoch(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    wrapped = nn.parallel.DistributedDataParallel(model) if context.distributed else model
    train_epoch(wrapped, loader, optimizer, torch.amp.GradScaler("cpu", enabled=False), context)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    context = setup_distributed("cpu")
    model = step_model()
    one_step(model, context)
    if context.is_main:
        torch.save(model.state_dict(), out / "ddp_step.pt")
    args = ["train", "--model", "resnet20_cifar", "--attention", "none", "--train-limit", "64",
            "--val-limit", "32", "--batch-size", "32", "--schedule", "constant", "--no-progress", "--quiet", "--device", "cpu"]
    codes = [
        main([*args, "--epochs", "2", "--out", str(out / "straight")]),
        main([*args, "--epochs", "1", "--out", str(out / "resumed")]),
        main([*args, "--epochs", "2", "--out", str(out / "resumed"), "--resume"]),
    ]
    teardown_distributed(context)
    sys.exit(max(codes))
