"""The `senet` command line: help everywhere, compare/ablate/train/analyze/export end to end on tiny settings,
and one-line errors without tracebacks for bad input."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from senet.cli import main
from senet.train import ModelSpec, build_model, save_weights, study_variants
from senet.train.ablate import STUDIES
from senet.train.checkpoint import CHECKPOINT_FORMAT

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "compare", "ablate", "analyze", "bench", "export", "convert")
QUICK = ["--epochs", "1", "--train-limit", "64", "--val-limit", "32", "--batch-size", "32", "--no-progress", "--quiet"]


class Evil:
    """Not a tensor: a checkpoint holding one must be refused."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny `senet train` run of an SE model, shared by the export and analyze tests."""
    out = tmp_path_factory.mktemp("trained")
    assert main(["train", "--model", "resnet20_cifar", "--attention", "se", "--reduction", "4", *QUICK, "--out", str(out)]) == 0
    return out


def test_python_m_senet_lists_every_command():
    done = subprocess.run([sys.executable, "-m", "senet", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert all(command in done.stdout for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_defaults(command: str, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: senet {command}") and "(default:" in text


def test_compare_writes_a_consistent_report(tmp_path: Path, capsys):
    out = tmp_path / "compare"
    assert main(["compare", "--seeds", "2", "--reduction", "4", *QUICK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for name in ("learning_curves.png", "gate_profiles.png", "gate_histograms.png", "cost_breakdown.png", "gates.json"):
        assert (out / name).stat().st_size > 0
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / image).is_file()
    plain, se = results["variants"]
    assert (plain["label"], se["label"], results["data"], results["seeds"]) == ("plain", "se", "digits", [0, 1])
    for variant in (plain, se):
        finals = [run["final_val_acc"] for run in variant["runs"]]
        for run in variant["runs"]:  # each run's final accuracy is the last line of its own metrics file
            last = json.loads(Path(run["out"], "metrics.jsonl").read_text().splitlines()[-1])
            assert last["val_acc"] == run["final_val_acc"] and 0.0 <= last["val_acc"] <= 1.0
        assert variant["val_acc_mean"] == pytest.approx(statistics.fmean(finals))
        assert variant["val_acc_std"] == pytest.approx(statistics.stdev(finals))
        row = f"| {variant['label']} | {100 * variant['val_acc_mean']:.2f} ± {100 * variant['val_acc_std']:.2f} |"
        assert row in report and row in printed
        assert f"{variant['params']:,}" in report
    assert se["params"] > plain["params"] and se["flops"] > plain["flops"]
    assert results["se_vs_plain"]["acc_delta_points"] == pytest.approx(100 * (se["val_acc_mean"] - plain["val_acc_mean"]))
    assert len(results["gates"]["blocks"]) == 9 and results["cost"]["total"]["params"] == se["params"]
    assert "scikit-learn digits" in report


def test_compare_audio_task_uses_padded_sequences(tmp_path: Path):
    out = tmp_path / "audio"
    assert main(["compare", "--task", "audio", "--seeds", "1", "--reduction", "4", *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"] == "synthetic1d" and results["variants"][1]["model_spec"]["options"]["spatial_dims"] == 1


def test_ablate_reduction_sweep_and_fit(tmp_path: Path):
    out = tmp_path / "ablate"
    assert main(["ablate", "--study", "reduction", "--seeds", "1", *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    labels = [v["label"] for v in results["variants"]]
    assert labels == ["plain (no SE)", "r = 2", "r = 4", "r = 8", "r = 16", "r = 32"]
    assert results["stage_widths"] == [16, 32, 64]
    assert results["variants"][-1]["model_spec"]["options"]["reduction"] == [16, 32, 32]  # r capped at each stage's C
    params = [v["params"] for v in results["variants"][1:]]
    assert params == sorted(params, reverse=True)  # larger r, fewer parameters
    fit = results["reduction_fit"]
    assert ("r_star" in fit and fit["r_star"] is None and fit["reason"]) or fit["r_star"] > 0
    assert "## Optimal reduction ratio" in (out / "report.md").read_text()


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_builds_its_rows(study: str):
    rows = study_variants(study, "resnet20_cifar", widths=(16, 32, 64))
    assert rows[0].spec.options == {"attention": None} and len({r.label for r in rows}) == len(rows) >= 3
    for row in rows:
        build_model(row.spec)  # every row is a valid model


def test_train_export_and_analyze(trained: Path, tmp_path: Path):
    assert {"checkpoint.pt", "model.safetensors", "metrics.csv", "metrics.jsonl", "report.md", "results.json"} <= {
        p.name for p in trained.iterdir()
    }
    results = json.loads((trained / "results.json").read_text())
    assert results["final_val_acc"] == results["history"][-1]["val_acc"] and "gates" in results
    for fmt, extra in (("torchscript", []), ("safetensors", []), ("onnx", ["--onnx-exporter", "legacy"])):
        target = tmp_path / f"model.{fmt}"
        assert main(["export", "--checkpoint", str(trained / "checkpoint.pt"), "--format", fmt, "--out", str(target), *extra]) == 0
        assert target.stat().st_size > 0
    analysis = tmp_path / "analysis"
    assert main(["analyze", "--checkpoint", str(trained / "model.safetensors"), "--data", "digits", "--val-limit", "32", "--out", str(analysis)]) == 0
    found = json.loads((analysis / "results.json").read_text())
    assert found["input_shape"] == [1, 8, 8] and len(found["gates"]["blocks"]) == 9
    assert "| **total** |" in (analysis / "report.md").read_text()
    assert main(["analyze", "--model", "seresnet20_cifar", "--out", str(tmp_path / "cost")]) == 0
    cost = json.loads((tmp_path / "cost" / "results.json").read_text())
    assert cost["input_shape"] == [3, 32, 32] and cost["cost"]["total"]["se_flops"] > 0


def test_export_mismatch_fails_loudly_and_writes_nothing(trained: Path, tmp_path: Path, monkeypatch, capsys):
    import senet.train.export as export

    real = export._export_torchscript

    def drifting(model, example, path):
        run = real(model, example, path)
        return lambda x: run(x) + 1e-2

    monkeypatch.setattr(export, "_export_torchscript", drifting)
    target = tmp_path / "drift.pt"
    assert main(["export", "--checkpoint", str(trained / "checkpoint.pt"), "--format", "torchscript", "--out", str(target)]) == 1
    assert "does not match PyTorch" in capsys.readouterr().err
    assert not target.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_onnx_export_with_the_default_dynamo_exporter(trained: Path, tmp_path: Path):
    target = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(trained / "model.safetensors"), "--format", "onnx", "--out", str(target)]) == 0
    assert target.stat().st_size > 0


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "corrupt.pt").write_bytes(b"\x80\x02 not a checkpoint")
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Evil()}, tmp_path / "evil.pt")
    plain = build_model(ModelSpec("resnet20_cifar", {"attention": None, "in_channels": 1}))
    save_weights(tmp_path / "mismatch.safetensors", plain, ModelSpec("seresnet20_cifar", {"in_channels": 1}), (1, 8, 8))
    (tmp_path / "a_file").write_text("")
    return {"corrupt": tmp_path / "corrupt.pt", "evil": tmp_path / "evil.pt", "mismatch": tmp_path / "mismatch.safetensors",
            "file": tmp_path / "a_file"}  # fmt: skip


BAD_INPUT = [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--attention", "nope"], "attention must be one of"),
    (["train", "--data", "nope"], "data must be one of"),
    (["train", "--data", "cifar10", "--data-dir", "{tmp}/absent"], "cifar10 not found under"),
    (["train", "--epochs", "0"], "epochs must be a positive int"),
    (["train", "--out", "{file}/run"], "is not writable"),
    (["compare", "--relatives", "nope"], "attention must be one of"),
    (["export", "--checkpoint", "{corrupt}", "--format", "onnx"], "corrupted or not a torch file"),
    (["export", "--checkpoint", "{evil}", "--format", "torchscript"], "refusing to load"),
    (["analyze", "--checkpoint", "{mismatch}"], "state dict does not match"),
    (["analyze", "--checkpoint", "{tmp}/absent.pt"], "checkpoint not found"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a[:3]) for a, _ in BAD_INPUT])
def test_bad_input_gives_one_line_and_exit_1(argv: list[str], message: str, tmp_path: Path, capsys):
    files = _bad_files(tmp_path)
    argv = [a.format(tmp=tmp_path, **files) for a in argv]
    if argv[0] in ("train", "compare"):  # quick settings first, so that the case's own options win
        argv = [argv[0], *QUICK, *argv[1:]]
    if argv[0] != "export" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"senet {argv[0]}: error: ") and "Traceback" not in err
    assert message in err
    assert not (tmp_path / "out").exists() or argv[0] in ("train", "compare")  # analyze checks its input first


def test_a_finished_run_is_never_overwritten(trained: Path, capsys):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    assert main(["train", "--model", "resnet20_cifar", "--attention", "se", "--reduction", "4", *QUICK, "--out", str(trained)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["train", *QUICK, "--tensorboard", "--out", str(tmp_path / "tb")]) == 1
    assert "needs the 'tensorboard' package" in capsys.readouterr().err


def test_unknown_study_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", "--study", "depth"])
    assert exit_info.value.code == 2 and "invalid choice: 'depth'" in capsys.readouterr().err
