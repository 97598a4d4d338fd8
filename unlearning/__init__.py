"""Unlearning methods: amnesiac (update subtraction), relabel, and the finetune and
retrain yardsticks. Plain torch in, plain torch out; nothing here knows of files
beyond the amnesiac update log, of the CLI or of reports."""

from unlearning.recorder import RecordingOptimizer, UpdateRecorder
from unlearning.training import TrainConfig, accuracy, fit, per_class_accuracy, predict_logits
from unlearning.update_log import UpdateLog, UpdateLogError

__all__ = [
    "RecordingOptimizer",
    "TrainConfig",
    "UpdateLog",
    "UpdateLogError",
    "UpdateRecorder",
    "accuracy",
    "fit",
    "per_class_accuracy",
    "predict_logits",
]
