"""Training and experiments: a typed config, an exactly resumable loop with DDP, and the studies behind
``senet compare`` and ``senet ablate``; depends on ``senet.data``, ``senet.models``, ``senet.analysis``."""

from senet.train.ablate import STUDIES, ablate, study_variants
from senet.train.analyze import analyze
from senet.train.checkpoint import load_checkpoint, save_checkpoint
from senet.train.compare import CompareResult, compare, compare_variants
from senet.train.config import ModelSpec, TrainConfig
from senet.train.experiment import Variant, VariantSummary, run_variants
from senet.train.export import ExportMismatchError, export_model
from senet.train.loop import RunResult, TrainingError, evaluate, fit, train_epoch
from senet.train.model import MaskedSequenceModel, build_model, configure_se
from senet.train.run import train_and_report
from senet.train.weights import load_trained, save_weights

__all__ = [
    "ModelSpec",
    "TrainConfig",
    "fit",
    "train_epoch",
    "evaluate",
    "RunResult",
    "TrainingError",
    "train_and_report",
    "build_model",
    "configure_se",
    "MaskedSequenceModel",
    "save_checkpoint",
    "load_checkpoint",
    "save_weights",
    "load_trained",
    "Variant",
    "VariantSummary",
    "run_variants",
    "compare",
    "compare_variants",
    "CompareResult",
    "ablate",
    "study_variants",
    "STUDIES",
    "analyze",
    "export_model",
    "ExportMismatchError",
]
