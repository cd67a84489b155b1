"""HydraDistilledClassifier: an ensemble of classifiers distilled into one network."""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._base import BaseHydra
from ._head_scale import mean_head_uncertainty
from ._params import declare_parameters, explicit_flag
from .losses import TemperedKLLoss, tempered_log_softmax
from .uncertainty import block_rows, entropy_decomposition, index_of, uncertainty_frame

__all__ = ["HydraDistilledClassifier"]

#: Log-probability given to a class a member rules out (probability exactly 0, e.g. a
#: tree's vote), before tempering: log(1e-8). Positive probabilities keep their exact
#: logarithm, so tempering a torch member's probabilities is tempering its logits.
_ZERO = 1e-8


@dataclass(frozen=True)
class ClassTargets:
    """Classification targets: each head's tempered member probabilities.

    Phase 1's single head learns the ensemble's weighted mean, phase 2's head
    ``h`` the mixture of its members, both tempered as
    ``softmax(log p / T)``; the criterion is the tempered KL divergence.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        The teacher's classes, in the order of the heads' outputs.
    temperature : float
        Distillation temperature ``T``.
    """

    classes: np.ndarray
    temperature: float

    @property
    def n_outputs(self):
        return len(self.classes)

    def encode(self, probabilities, heads, y):
        """Targets of a chunk: ``({"target": (n, 1, C)}, {"target": (n, H, C)})``.

        With rank matching, members are ranked by their expected class index
        (for votes: the class itself), so heads learn the ensemble's votes
        class by class rather than one member's.
        """
        key = probabilities @ np.arange(probabilities.shape[-1], dtype=probabilities.dtype)
        probabilities = heads.ranked(key, probabilities)
        return (
            self._tempered(heads.mean_target(probabilities)),
            self._tempered(heads.head_targets(probabilities)),
        )

    def _tempered(self, probabilities):
        """``{"target": softmax(log p / T), "neg_entropy": mean over heads of sum p log p}``."""
        p = torch.tensor(np.asarray(probabilities), dtype=torch.float32).clamp_(0.0, 1.0)
        log_p = p.masked_fill_(p <= 0, _ZERO).log_()
        log_t = tempered_log_softmax(log_p, self.temperature)
        target = log_t.exp()
        neg_entropy = (target * log_t).sum(dim=-1).mean(dim=1)
        return {"target": target.contiguous().numpy(), "neg_entropy": neg_entropy.numpy()}

    def criterion(self):
        return TemperedKLLoss(self.temperature)

    def head_uncertainty(self, encoded, head_weights):
        """Mean entropy and mean disagreement (over rows, weighted over heads) of phase-2
        targets, untempered.

        ``encoded`` holds ``softmax(log p / T)`` (n, heads, classes); ``p`` is
        ``softmax(log target / (1 / T))`` again, up to the clipping of zeros.
        """
        tempered = torch.as_tensor(np.asarray(encoded), dtype=torch.float64)
        log_p = tempered_log_softmax(tempered.clamp_min(1e-300).log(), 1.0 / self.temperature)
        return mean_head_uncertainty(log_p, head_weights.double())


def _head_probabilities(logits):
    """Softmax over the classes of (n, heads, classes) logits, as (n, classes, heads).

    With the heads on the last, contiguous axis torch vectorises across
    heads; a softmax over a last axis of a few classes is about 3x slower.
    """
    return torch.softmax(logits.transpose(1, 2).contiguous(), dim=1)


def _blocks(outputs):
    """Head outputs re-cut into blocks that fit the CPU's cache (see ``block_rows``)."""
    for logits in outputs:
        yield from logits.split(block_rows(logits.shape[1] * logits.shape[2]))


_ENSEMBLE_DOC = """ensemble : object, default=None
        The teacher. A fitted scikit-learn ensemble with members in
        ``estimators_`` (random forest, extra trees, bagging, voting), a list
        of fitted classifiers sharing their classes (scikit-learn, skorch,
        Pipelines), a Pipeline ending in one of these, a
        :class:`~sklearn.frozen.FrozenEstimator` around one, or a list of
        :class:`torch.nn.Module` returning logits. A fitted ensemble is used as
        it is and never refit, also by clones in searches. An unfitted
        ensemble (or list) is cloned and fitted on ``(X, y, sample_weight)``.
        ``None`` fits a random forest of 20 trees (``random_state`` passed
        on). Boosting and stacking are refused: their parts are not
        interchangeable members."""


@declare_parameters("classifier", _ENSEMBLE_DOC)
class HydraDistilledClassifier(ClassifierMixin, BaseHydra):
    """Distil an ensemble of classifiers into one network that keeps its uncertainty.

    Hydra (Tran et al., 2020) trains one shared body with one light head per
    ensemble member, in two phases: first the body and a single head learn the
    ensemble's mean prediction (knowledge distillation), then that head is
    copied into every head and head ``m`` learns member ``m`` through a
    tempered KL divergence. The mean of the heads predicts like the ensemble;
    the spread of the heads is the ensemble's disagreement, so the student
    still reports epistemic uncertainty.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The ensemble's classes (the union of its members' classes).

    head_scale_ : float
        The factor on every head's logits chosen after training (see
        ``match_aleatoric``); 1.0 when none was.

    head_spread_ : float
        The factor on the heads' deviations from their mean logit chosen
        after training (see ``match_epistemic``); 1.0 when none was.

    {attributes}

    See Also
    --------
    HydraDistilledRegressor : The same for an ensemble of regressors.
    skhydra.predict_uncertainty : Uncertainty of a student, a pipeline, a
        search or the ensemble itself.

    References
    ----------
    .. [1] L. Tran, B. S. Veeling, K. Roth, J. Swiatkowski, J. V. Dillon,
       J. Snoek, S. Mandt, T. Salimans, S. Nowozin, R. Jenatton. "Hydra:
       Preserving Ensemble Diversity for Model Distillation", 2020.
       :arxiv:`2001.04694`

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> hydra = HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(32,), phase1_epochs=10, max_epochs=30, random_state=0
    ... ).fit(X)
    >>> hydra.n_heads_
    10
    >>> hydra.predict_proba(X[:2]).shape
    (2, 3)
    >>> hydra.predict_uncertainty(X[:2]).columns.tolist()
    ['total', 'aleatoric', 'epistemic']
    """

    _task = "classifier"

    def predict(self, X):
        """Predict class labels: the most probable class of the heads' mean.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_proba(self, X):
        """Predict class probabilities: the (weighted) mean of the heads.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``; rows sum to one.
        """
        outputs = self._head_outputs(X)
        weights = torch.as_tensor(self.head_weights_, dtype=torch.float64)
        proba = np.concatenate(
            [(_head_probabilities(z).double() @ weights).numpy() for z in _blocks(outputs)]
        )
        # The heads' float32 softmax sums to 1 up to rounding; make it exact.
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_members(self, X):
        """Predict every head's class probabilities.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        ndarray of shape (n_samples, n_heads, n_classes)
            Head ``h``'s probabilities, the student's counterpart of
            :func:`skhydra.ensembles.predict_members`.
        """
        return torch.softmax(torch.cat(list(self._head_outputs(X))), dim=-1).numpy()

    def predict_uncertainty(self, X):
        """Decompose the predictive entropy into aleatoric and epistemic parts.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Input rows.

        Returns
        -------
        DataFrame of shape (n_samples, 3)
            Columns ``total`` (entropy of the mean prediction), ``aleatoric``
            (mean entropy of the heads) and ``epistemic`` (their difference,
            the mutual information, >= 0), in nats; the index of ``X`` when
            ``X`` is a DataFrame.
        """
        outputs = self._head_outputs(X)
        weights = torch.as_tensor(self.head_weights_, dtype=torch.float32)
        parts = []
        for logits in _blocks(outputs):
            # Heads on the last, contiguous axis (see _head_probabilities).
            log_p = torch.log_softmax(logits.transpose(1, 2).contiguous(), dim=1)
            parts.append(torch.stack(entropy_decomposition(log_p.exp(), weights, log_p=log_p)))
        total, aleatoric = torch.cat(parts, dim=1).double().numpy()
        epistemic = np.maximum(total - aleatoric, 0.0)
        return uncertainty_frame(aleatoric + epistemic, aleatoric, epistemic, index=index_of(X))

    # -- what differs from regression -------------------------------------------

    def _default_ensemble(self):
        return RandomForestClassifier(n_estimators=20, random_state=self.random_state)

    def _check_y(self, y, fit_ensemble):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if fit_ensemble and len(np.unique(y)) < 2:
            raise ValueError(
                f"y has only one class ({np.unique(y)[0].item()!r}); the ensemble needs at "
                "least two classes to fit."
            )
        return y

    def _target_encoding(self, teacher, y, predictions):
        return ClassTargets(teacher.classes_, self.temperature)

    def _check_task_params(self):
        if explicit_flag(self.match_epistemic) and len(self.head_layer_sizes) > 0:
            raise ValueError(
                "match_epistemic=True needs heads of one layer (head_layer_sizes=()), "
                "whose spread folds into their weights; got head_layer_sizes="
                f"{tuple(self.head_layer_sizes)}. Use match_epistemic='auto' or False."
            )

    def _head_factors(self, teacher, n_heads):
        """(match the entropy?, match the disagreement?) after training."""
        if n_heads < 2:
            return False, False
        linear = len(self.head_layer_sizes) == 0
        scale, spread = explicit_flag(self.match_aleatoric), explicit_flag(self.match_epistemic)
        return (
            teacher.tree_based if scale is None else scale,
            teacher.tree_based and linear if spread is None else spread,
        )
