"""Membership inference and model inversion attacks, scored as the field scores them.

Every membership attack returns one score per example, higher meaning "member";
:func:`membership_metrics` turns scores and ground truth into ROC, AUC, TPR at low FPR
and an epsilon lower bound. This package takes torch models, tensors and a
``train_reference(ids, seed) -> nn.Module`` callable; it knows nothing of the CLI.
"""

from attacks.inversion import PAPER_SETTINGS, mi_face_art, mi_face_batched, model_inversion
from attacks.inversion_scores import ClassInversionScore, ModelInversionResult, score_reconstructions
from attacks.label_only import label_only_scores
from attacks.lira import lira_scores, lira_statistics
from attacks.loss_threshold import loss_threshold_scores
from attacks import registry
from attacks.membership import ATTACKS, AttackResult, MembershipAudit, run_membership_attacks
from attacks.metrics import MembershipMetrics, membership_metrics
from attacks.reference import (
    ReferenceCache,
    ReferenceModels,
    default_cache_dir,
    leave_part_out_inclusion,
    load_or_train,
    model_digest,
    train_one,
    train_reference_models,
)
from attacks.rmia import rmia_scores, rmia_statistics
from attacks.registry import DEFAULT_ATTACKS, DEFAULT_REFERENCE_MODELS, MembershipAttack, ModelAccess, Signals
from attacks.shadow import shadow_model_scores
from attacks.signals import model_logits, scaled_confidence
from attacks.significance import (
    PairedTest,
    RateTest,
    holm,
    paired_permutation_test,
    per_example_statistic,
    rate_excess_test,
)

__all__ = [
    "ATTACKS",
    "DEFAULT_ATTACKS",
    "DEFAULT_REFERENCE_MODELS",
    "PAPER_SETTINGS",
    "PairedTest",
    "RateTest",
    "AttackResult",
    "ClassInversionScore",
    "MembershipAttack",
    "MembershipAudit",
    "ModelAccess",
    "MembershipMetrics",
    "ModelInversionResult",
    "ReferenceCache",
    "ReferenceModels",
    "Signals",
    "default_cache_dir",
    "holm",
    "label_only_scores",
    "load_or_train",
    "lira_scores",
    "lira_statistics",
    "loss_threshold_scores",
    "membership_metrics",
    "mi_face_art",
    "model_digest",
    "model_logits",
    "paired_permutation_test",
    "per_example_statistic",
    "rate_excess_test",
    "mi_face_batched",
    "model_inversion",
    "registry",
    "rmia_scores",
    "rmia_statistics",
    "run_membership_attacks",
    "scaled_confidence",
    "score_reconstructions",
    "shadow_model_scores",
    "train_one",
    "train_reference_models",
    "leave_part_out_inclusion",
]
