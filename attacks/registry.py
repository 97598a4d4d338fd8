"""One registry of membership attacks, and the signals they read, computed once.

Every membership attack is an entry of :data:`ATTACKS`: its name, label, citation, what
it assumes, whether it needs reference models, and how it scores. Attacks that need only
what a black-box attacker reads off the models (logits) are *pure functions of*
:class:`Signals`: the audited model's logits and every reference model's logits on the
scored examples (and on population samples, for RMIA), computed once and shared by all
attacks, as ML Privacy Meter's signal matrices are. The two attacks that run IBM ART
(Shokri shadow models, label-only HopSkipJump) need the model itself and get a
:class:`ModelAccess` instead.

Both the library call (:func:`attacks.run_membership_attacks`) and the audit harness
(``audit/attacking.py``) dispatch through :func:`score`, and both take their defaults from
here: :data:`DEFAULT_ATTACKS` and :data:`DEFAULT_REFERENCE_MODELS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from attacks.lira import lira_statistics
from attacks.reference import ReferenceModels, TrainReference, ModelFactory
from attacks.rmia import DEFAULT_GAMMA, DEFAULT_OFFLINE_A, marginal_probability, rmia_statistics
from attacks.signals import cross_entropy, model_logits, scaled_confidence, true_class_probability

# Reference models: the default of run_membership_attacks and of the audit (the building
# blocks, train_reference_models and shadow_model_scores, take the count from their caller).
# LiRA with a fixed variance is usable from ~8 models on (Carlini et al. 2022, fig. 9) and
# RMIA from 1-2; the audit's detection-power figures (benchmarks/results/detection.md) are
# measured with 16. They are trained once per audit and cached.
DEFAULT_REFERENCE_MODELS = 16
# The shadow attack (ART) trains an attack model per scored model (~50 s each on 2 cores) and
# label-only runs HopSkipJump per example: both are available by name, left out of the
# default so that an audit stays within minutes.
DEFAULT_ATTACKS = ("loss", "lira_online", "rmia")


@dataclass
class Signals:
    """Logits of the audited model and of the reference models, computed once.

    ``logits`` (N, C): the audited model on the scored examples, labels ``y`` (N,).
    ``reference_logits`` (M, N, C) and ``in_mask`` (M, N): the reference models on the same
    examples and which trained on which. ``population_*``: the same for RMIA's population
    samples z (default: the scored examples themselves).
    """

    y: torch.Tensor
    logits: torch.Tensor
    reference_logits: torch.Tensor | None = None
    in_mask: np.ndarray | None = None
    population_y: torch.Tensor | None = None
    population_logits: torch.Tensor | None = None
    population_reference_logits: torch.Tensor | None = None
    population_in_mask: np.ndarray | None = None

    def reference_signal(self, signal: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
                         population: bool = False) -> np.ndarray:
        """``signal(logits, y)`` of every reference model: (M, N) float64."""
        logits = self.population_reference_logits if population else self.reference_logits
        y = self.population_y if population else self.y
        if logits is None:
            raise ValueError("this attack needs reference models; pass reference_logits and in_mask")
        return np.stack([signal(logits[m], y) for m in range(logits.shape[0])])


@dataclass
class ModelAccess:
    """What the ART attacks need beyond signals: the model, the images, and a reference-model trainer."""

    model: nn.Module
    x: torch.Tensor
    pool_x: torch.Tensor | None = None
    pool_y: torch.Tensor | None = None
    ids: np.ndarray | None = None
    train_reference: TrainReference | None = None
    num_models: int = DEFAULT_REFERENCE_MODELS
    seed: int = 0
    num_classes: int | None = None
    cache_dir: object = None
    model_factory: ModelFactory | None = None
    cache_key: str | None = None
    shadow_attack_model_type: str = "nn"


@dataclass(frozen=True)
class MembershipAttack:
    """One membership attack: higher scores mean "member".

    ``needs_reference``: it trains reference (shadow) models; ``from_signals`` attacks
    read theirs from :class:`Signals`, ``from_model`` attacks train their own through
    :class:`ModelAccess`. ``scores_a_subset``: it queries the model many times per example,
    so the library scores a balanced subset (``label_only_max_examples``).
    """

    name: str
    label: str
    citation: str
    assumes: str
    needs_reference: bool
    from_signals: Callable[[Signals], np.ndarray] | None = None
    from_model: Callable[[ModelAccess, torch.Tensor], np.ndarray] | None = None
    settings: dict | None = None
    scores_a_subset: bool = False

    @property
    def reads_reference_signals(self) -> bool:
        """Whether it reads the reference models' logits (computed once and shared), not its own models."""
        return self.needs_reference and self.from_signals is not None


def _loss(s: Signals) -> np.ndarray:
    return -cross_entropy(s.logits, s.y)


def _lira(online: bool) -> Callable[[Signals], np.ndarray]:
    def score(s: Signals) -> np.ndarray:
        return lira_statistics(scaled_confidence(s.logits, s.y), s.reference_signal(scaled_confidence),
                               s.in_mask, online=online, fixed_variance=True)
    return score


def _rmia(online: bool) -> Callable[[Signals], np.ndarray]:
    def score(s: Signals) -> np.ndarray:
        p_x = true_class_probability(s.logits, s.y)
        marginal_x = marginal_probability(s.reference_signal(true_class_probability), s.in_mask, online,
                                          DEFAULT_OFFLINE_A)
        if s.population_logits is None:
            p_z, marginal_z = p_x, marginal_x
        else:
            p_z = true_class_probability(s.population_logits, s.population_y)
            marginal_z = marginal_probability(s.reference_signal(true_class_probability, population=True),
                                              s.population_in_mask, online, DEFAULT_OFFLINE_A)
        return rmia_statistics(p_x, marginal_x, p_z, marginal_z, DEFAULT_GAMMA)
    return score


def _shadow(access: ModelAccess, y: torch.Tensor) -> np.ndarray:
    from attacks.shadow import shadow_model_scores

    if access.train_reference is None or access.pool_x is None:
        raise ValueError("the shadow-model attack needs train_reference and the auditor's data")
    return shadow_model_scores(access.model, access.pool_x, access.pool_y, access.train_reference, ids=access.ids,
                               num_shadow_models=access.num_models, seed=access.seed,
                               attack_model_type=access.shadow_attack_model_type, cache_dir=access.cache_dir,
                               model_factory=access.model_factory, cache_key=access.cache_key)


def _label_only(access: ModelAccess, y: torch.Tensor) -> np.ndarray:
    from attacks.label_only import label_only_scores

    num_classes = access.num_classes or int(y.max()) + 1
    return label_only_scores(access.model, access.x, y, num_classes=num_classes, seed=access.seed)


_REF = "reference models trained with and without each example"
ATTACKS: dict[str, MembershipAttack] = {a.name: a for a in (
    MembershipAttack("loss", "LOSS threshold (Yeom et al. 2018)", "Yeom et al., IEEE CSF 2018",
                     "the per-example loss; no reference models", False, from_signals=_loss),
    MembershipAttack("lira_online", "LiRA online (Carlini et al. 2022)", "Carlini et al., IEEE S&P 2022",
                     f"black-box logits; {_REF}", True, from_signals=_lira(True),
                     settings={"fixed_variance": True, "online": True}),
    MembershipAttack("lira_offline", "LiRA offline (Carlini et al. 2022)", "Carlini et al., IEEE S&P 2022",
                     "black-box logits; reference models trained without each example", True,
                     from_signals=_lira(False), settings={"fixed_variance": True, "online": False}),
    MembershipAttack("rmia", "RMIA (Zarifzadeh et al. 2024)", "Zarifzadeh, Liu and Shokri, ICML 2024",
                     "black-box probabilities; reference models and population samples", True,
                     from_signals=_rmia(True), settings={"online": True, "gamma": DEFAULT_GAMMA}),
    MembershipAttack("rmia_offline", "RMIA offline (Zarifzadeh et al. 2024)", "Zarifzadeh, Liu and Shokri, ICML 2024",
                     "black-box probabilities; reference models without each example and population samples", True,
                     from_signals=_rmia(False), settings={"online": False, "gamma": DEFAULT_GAMMA,
                                                          "offline_a": DEFAULT_OFFLINE_A}),
    MembershipAttack("shadow", "Shadow models, ART (Shokri et al. 2017)", "Shokri et al., IEEE S&P 2017",
                     "black-box softmax; shadow models on the auditor's data", True, from_model=_shadow,
                     settings={"attack_model_type": "nn", "library": "ART"}),
    MembershipAttack("label_only", "Label-only decision boundary, ART (Choquette-Choo et al. 2021)",
                     "Choquette-Choo et al., ICML 2021", "predicted labels only", False, from_model=_label_only,
                     settings={"library": "ART"}, scores_a_subset=True),
)}
# Attacks that train reference models, and those of them that read the shared reference signals.
NEEDS_REFERENCE = frozenset(name for name, a in ATTACKS.items() if a.needs_reference)
SIGNAL_REFERENCE = frozenset(name for name, a in ATTACKS.items() if a.reads_reference_signals)
assert set(DEFAULT_ATTACKS) <= ATTACKS.keys()


def get(name: str) -> MembershipAttack:
    if name not in ATTACKS:
        raise ValueError(f"unknown membership attack {name!r}; choose from {', '.join(ATTACKS)}")
    return ATTACKS[name]


def score(name: str, signals: Signals, access: ModelAccess | None = None) -> np.ndarray:
    """Scores (N,) of attack ``name``: from the signals, or from the model for the ART attacks."""
    attack = get(name)
    if attack.from_signals is not None:
        return np.asarray(attack.from_signals(signals), dtype=np.float64)
    if access is None:
        raise ValueError(f"the {name} attack runs on the model itself; pass a ModelAccess")
    return np.asarray(attack.from_model(access, signals.y), dtype=np.float64)


def reference_logits(reference: ReferenceModels, x: torch.Tensor) -> torch.Tensor:
    """Every reference model's logits on ``x``: (M, N, C), float64."""
    return torch.stack([model_logits(m, x) for m in reference.models])
