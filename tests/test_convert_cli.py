"""`senet convert` end to end: a peer's checkpoint file becomes senet weights that load strictly."""

from __future__ import annotations

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
