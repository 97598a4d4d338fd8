"""Unlearning methods: amnesiac (update subtraction), relabel, and the finetune and
retrain yardsticks. Plain torch in, plain torch out; nothing here knows of files
beyond the amnesiac update log, of the CLI or of reports."""

from unlearning.amnesiac import AMNESIAC_REPAIR_EPOCHS, AmnesiacRefused, amnesiac_unlearn
from unlearning.finetune import FINETUNE_EPOCHS, UnlearningResult, finetune_unlearn, retain_mask
from unlearning.packing import PackedBatchSampler
from unlearning.recorder import DatasetWithIds, MissingBatchIds, UpdateRecorder
from unlearning.relabel import RELABEL_EPOCHS, RELABEL_SAMPLE_COPIES, random_wrong_labels, relabel_unlearn
from unlearning.retrain import retrain_unlearn
from unlearning.training import (
    NonFiniteTraining,
    TrainConfig,
    TrainFunction,
    accuracy,
    fit,
    per_class_accuracy,
    predict_logits,
    train_with,
)
from unlearning.update_log import UpdateLog, UpdateLogError

__all__ = [
    "AMNESIAC_REPAIR_EPOCHS",
    "AmnesiacRefused",
    "DatasetWithIds",
    "FINETUNE_EPOCHS",
    "MissingBatchIds",
    "NonFiniteTraining",
    "PackedBatchSampler",
    "RELABEL_EPOCHS",
    "RELABEL_SAMPLE_COPIES",
    "TrainConfig",
    "TrainFunction",
    "UnlearningResult",
    "UpdateLog",
    "UpdateLogError",
    "UpdateRecorder",
    "accuracy",
    "amnesiac_unlearn",
    "finetune_unlearn",
    "fit",
    "per_class_accuracy",
    "predict_logits",
    "random_wrong_labels",
    "relabel_unlearn",
    "retain_mask",
    "retrain_unlearn",
    "train_with",
]
