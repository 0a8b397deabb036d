"""`senet convert` end to end: a peer's checkpoint file becomes senet weights that load strictly."""

from __future__ import annotations

import argparse

import pytest
import torch

from senet.cli import main
from senet.models import create_model, load_weights


def test_convert_torchvision_checkpoint_file(tmp_path):
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    peer = models.resnet18(weights=None, num_classes=10).eval()
    src, dst = tmp_path / "tv_resnet18.pth", tmp_path / "senet_resnet18.safetensors"
    torch.save(peer.state_dict(), src)
    assert main(["convert", "--from", "torchvision", "--model", "resnet18", "--in", str(src), "--out", str(dst)]) == 0
    ours = load_weights(create_model("resnet18", num_classes=10), dst).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x))


def test_convert_into_the_wrong_architecture_fails_cleanly(tmp_path, capsys):
    models = pytest.importorskip("torchvision.models")
    src, dst = tmp_path / "tv_resnet18.pth", tmp_path / "out.safetensors"
    torch.save(models.resnet18(weights=None).state_dict(), src)
    assert main(["convert", "--from", "torchvision", "--model", "resnet34", "--in", str(src), "--out", str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("senet convert: error:") and "Traceback" not in err
    assert not dst.exists()


def test_convert_timm_training_checkpoint_as_timm_loads_it(tmp_path):
    """A checkpoint written by timm's own ``CheckpointSaver`` (``args`` pickled as an ``argparse.Namespace``,
    optimizer state, EMA weights) converts as ``timm.models.load_checkpoint`` reads it: the EMA weights by
    default, the live ones with ``--no-ema``."""
    timm = pytest.importorskip("timm")
    from timm.utils import CheckpointSaver, ModelEmaV3

    torch.manual_seed(0)
    peer = timm.create_model("seresnet18", num_classes=10)
    ema = ModelEmaV3(peer)
    with torch.no_grad():
        for p in peer.parameters():  # the live weights move away from the EMA copy
            p.add_(0.05 * torch.randn_like(p))
    optimizer = torch.optim.SGD(peer.parameters(), lr=0.1, momentum=0.9)
    args = argparse.Namespace(model="seresnet18", lr=0.1, sched="cosine", device="cpu")
    saver = CheckpointSaver(peer, optimizer, args=args, model_ema=ema, checkpoint_dir=str(tmp_path))
    saver.save_checkpoint(epoch=0, metric=0.5)
    src = tmp_path / "model_best.pth.tar"
    x = torch.randn(2, 3, 64, 64)
    outputs = {}
    for use_ema in (True, False):
        dst = tmp_path / f"senet_ema_{use_ema}.safetensors"
        flags = [] if use_ema else ["--no-ema"]
        assert main(["convert", "--from", "timm", "--model", "seresnet18", "--in", str(src), "--out", str(dst), *flags]) == 0
        reference = timm.create_model("seresnet18", num_classes=10)
        timm.models.load_checkpoint(reference, str(src), use_ema=use_ema)
        ours = load_weights(create_model("seresnet18", num_classes=10), dst).eval()
        with torch.no_grad():
            outputs[use_ema] = ours(x)
            torch.testing.assert_close(outputs[use_ema], reference.eval()(x))
    assert not torch.allclose(outputs[True], outputs[False])  # the two really are different weights


def test_convert_refuses_checkpoints_that_need_code(tmp_path, capsys):
    src, dst = tmp_path / "unsafe.pt", tmp_path / "out.safetensors"
    torch.save({"state_dict": create_model("resnet18").state_dict(), "extra": _Opaque()}, src)
    assert main(["convert", "--from", "timm", "--model", "resnet18", "--in", str(src), "--out", str(dst)]) == 1
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "Traceback" not in err
    assert not dst.exists()


class _Opaque:
    """A class no safe loader knows: pickling an instance needs code to load it back."""
