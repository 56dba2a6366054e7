"""Tests for torchbook.evaluate, the command-line evaluation of a training run's checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from torchbook import evaluate, train
from torchbook.checkpoints import load_checkpoint, save_checkpoint
from torchbook.datasets import load_image_folder_as_tensors, normalize_images
from torchbook.models import resnet
from torchbook.recipe import RecipeConfig, build_model

from scripts import expect_input_error

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
TEST = SAMPLE / "cifar2" / "test"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One epoch of a tiny ResNet on the sample's cifar2, as torchbook.train writes it."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = train.main(["--data", str(SAMPLE / "cifar2"), "--out", str(out), "--model", "resnet8",
                       "--width", "8", "--batch-size", "32", "--epochs", "1", "--no-progress"])
    assert code == 0
    return out


def by_hand(checkpoint: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images' labels and the run's predicted classes, computed without evaluate."""
    model = resnet(8, width=8, num_classes=2)
    meta = load_checkpoint(checkpoint, model)
    images, labels, _ = load_image_folder_as_tensors(TEST)
    with torch.no_grad():
        logits = model.eval()(normalize_images(images, meta["mean"], meta["std"]))
    return labels, logits


def test_evaluate_reads_the_checkpoint_train_wrote(run: Path, tmp_path, capsys) -> None:
    """Printed and JSON metrics are the model's own on the 40 sample test images."""
    path = tmp_path / "out" / "metrics.json"
    assert evaluate.main([str(run / "best.pt"), "--data", str(TEST), "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(path.read_text())
    labels, logits = by_hand(run / "best.pt")
    assert metrics["images"] == 40
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == labels).float().mean())
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, logits.softmax(1)[:, 1]))
    assert metrics["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert set(metrics["per_class_accuracy"]) == {"0_airplane", "1_automobile"}
    for name in ("loss", "accuracy", "auc"):
        assert f"{name} " in printed and f"{metrics[name]:.4f}" in printed


def test_classification_metrics_of_known_logits() -> None:
    """Three classes: accuracy overall and per class, no AUC; two classes: the AUC too."""
    logits = torch.tensor([[2.0, 0, 0], [0, 2, 0], [2, 0, 0], [0, 0, 2]])
    labels = torch.tensor([0, 1, 1, 2])
    metrics = evaluate.classification_metrics(logits, labels, ["a", "b", "c"])
    assert metrics["accuracy"] == 0.75 and "auc" not in metrics
    assert metrics["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    two = evaluate.classification_metrics(torch.tensor([[0.0, 1], [0, 2], [1, 0]]),
                                          torch.tensor([0, 1, 0]), ["x", "y"])
    assert two["auc"] == 1.0 and two["accuracy"] == pytest.approx(2 / 3)


def test_missing_checkpoint(tmp_path, capsys) -> None:
    code = evaluate.main([str(tmp_path / "none.pt"), "--data", str(TEST)])
    expect_input_error(code, capsys, "No checkpoint")


def test_corrupt_checkpoint(run: Path, tmp_path, capsys) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes((run / "best.pt").read_bytes()[:500])
    expect_input_error(evaluate.main([str(broken), "--data", str(TEST)]), capsys, "corrupt")


def test_checkpoint_of_another_model(tmp_path, capsys) -> None:
    """The book's recipe network, as data/models/cifar2_recipe.pt holds it."""
    path = save_checkpoint(tmp_path / "cifar2_recipe.pt", build_model(RecipeConfig()))
    expect_input_error(evaluate.main([str(path), "--data", str(TEST)]), capsys,
                       "RecipeNet", "torchbook.train")


def test_folder_with_other_classes(run: Path, capsys) -> None:
    """The ten cifar10 classes are not the run's two."""
    code = evaluate.main([str(run / "best.pt"), "--data", str(SAMPLE / "cifar10" / "test")])
    expect_input_error(code, capsys, "airplane", "trained on")


def test_data_root_instead_of_split_gets_a_hint(run: Path, capsys) -> None:
    code = evaluate.main([str(run / "best.pt"), "--data", str(SAMPLE / "cifar2")])
    expect_input_error(code, capsys, "did you mean", "test")


def test_other_classes_are_refused_before_any_image_is_decoded(run: Path, capsys,
                                                                 monkeypatch) -> None:
    """The data root holds test/: refusing it must not decode (read) the test images."""
    def no_decoding(folder: Path) -> None:
        raise AssertionError(f"decoded {folder}")

    monkeypatch.setattr(evaluate, "load_image_folder_as_tensors", no_decoding)
    code = evaluate.main([str(run / "best.pt"), "--data", str(SAMPLE / "cifar2")])
    expect_input_error(code, capsys, "did you mean", "test")


def test_missing_data_folder(run: Path, tmp_path, capsys) -> None:
    code = evaluate.main([str(run / "best.pt"), "--data", str(tmp_path / "nowhere")])
    expect_input_error(code, capsys, "no folder")


def test_script_gives_exit_code_2_without_traceback(tmp_path) -> None:
    """Run as `python -m torchbook.evaluate` on a file that is not a checkpoint."""
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torchbook.evaluate", str(path), "--data",
                           str(TEST)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
