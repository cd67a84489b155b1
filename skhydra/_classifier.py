"""HydraDistilledClassifier: an ensemble of classifiers distilled into one network."""

from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._base import BaseHydra
from ._docs import fill
from .losses import TemperedKLLoss
from .uncertainty import uncertainty_frame

__all__ = ["HydraDistilledClassifier"]

_EPS = 1e-8


def _tempered(probabilities, temperature):
    """``softmax(log p / T)`` along the last axis, float32."""
    logp = np.log(np.clip(probabilities, _EPS, 1.0)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    p = np.exp(logp)
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


#: Rows per block of the batched decomposition: blocks of (rows, heads, classes)
#: that stay in the CPU's cache are several times faster than whole batches.
_BLOCK_ROWS = 512


def _blocks(chunks):
    for logits in chunks:
        yield from logits.float().split(_BLOCK_ROWS)


def _head_softmax(logits):
    """Softmax over the classes of (n, heads, classes) logits, as (n, classes, heads).

    With the heads on the last, contiguous axis torch vectorises across
    heads; a softmax over a last axis of a few classes is about 3x slower.
    """
    return torch.softmax(logits.transpose(1, 2).contiguous(), dim=1)


def _head_entropies(logits):
    """Probabilities (n, classes, heads) and entropies (n, heads) of each head.

    The entropy is ``logsumexp(z) - sum_c p_c z_c``: one exponential per
    class and one logarithm per head, instead of a logarithm per class.
    """
    z = logits.transpose(1, 2).contiguous()
    z = z - z.amax(dim=1, keepdim=True)
    e = z.exp()
    norm = e.sum(dim=1)
    p = e / norm.unsqueeze(1)
    return p, norm.log() - (p * z).sum(dim=1)


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
    ensemble : object, default=None
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
        interchangeable members.

    {architecture}

    temperature : float, default=4.0
        Distillation temperature ``T`` of the per-head KL divergence,
        ``T^2 / M * sum_m KL(softmax(log p_m / T) || softmax(z_m / T))``.
        ``T > 1`` softens the members' probabilities and weighs the smaller
        classes more; predictions always use ``T = 1``.

    {training}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The ensemble's classes (the union of its members' classes).

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
    ...     forest, body_layer_sizes=(32,), phase1_epochs=10, max_epochs=20, random_state=0
    ... ).fit(X)
    >>> hydra.n_heads_
    10
    >>> hydra.predict_proba(X[:2]).shape
    (2, 3)
    >>> hydra.predict_uncertainty(X[:2]).columns.tolist()
    ['total', 'aleatoric', 'epistemic']
    """

    _parameter_constraints = {
        **BaseHydra._parameter_constraints,
        "temperature": [Interval(Real, 0, None, closed="neither")],
    }

    _task = "classifier"

    def __init__(
        self,
        ensemble=None,
        *,
        body_layer_sizes=(256, 256),
        head_layer_sizes=(),
        n_heads=None,
        body=None,
        body_params=None,
        input_scaling="auto",
        temperature=4.0,
        phase1_epochs=100,
        max_epochs=300,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size="auto",
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=30,
        augmentation="noise",
        augmentation_factor=1.0,
        noise_scale=0.5,
        device="auto",
        random_state=None,
        verbose=0,
        callbacks=None,
        skorch_params=None,
        precision="float32",
        accelerator=None,
        memory_budget="2GB",
        memory=None,
        n_jobs=None,
    ):
        self.ensemble = ensemble
        self.body_layer_sizes = body_layer_sizes
        self.head_layer_sizes = head_layer_sizes
        self.n_heads = n_heads
        self.body = body
        self.body_params = body_params
        self.input_scaling = input_scaling
        self.temperature = temperature
        self.phase1_epochs = phase1_epochs
        self.max_epochs = max_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augmentation = augmentation
        self.augmentation_factor = augmentation_factor
        self.noise_scale = noise_scale
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.skorch_params = skorch_params
        self.precision = precision
        self.accelerator = accelerator
        self.memory_budget = memory_budget
        self.memory = memory
        self.n_jobs = n_jobs

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
        chunks = self._forward_chunks(X)
        weights = torch.as_tensor(self._head_weights, dtype=torch.float64)
        parts = []
        for logits in _blocks(chunks):
            probabilities = _head_softmax(logits).double()  # (n, classes, heads)
            parts.append((probabilities @ weights).numpy())
        proba = np.concatenate(parts)
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
        return torch.softmax(self._forward(X), dim=-1).numpy()

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
        chunks = self._forward_chunks(X)
        weights = torch.as_tensor(self._head_weights, dtype=torch.float32)
        total, aleatoric = [], []
        for logits in _blocks(chunks):
            # Same decomposition as skhydra.uncertainty.classification_uncertainty,
            # in torch and by blocks: no (n, heads, classes) array in numpy.
            p, entropies = _head_entropies(logits)
            total.append(torch.special.entr(p @ weights).sum(dim=1).double())
            aleatoric.append((entropies @ weights).double())
        total = torch.cat(total).numpy()
        aleatoric = torch.cat(aleatoric).numpy()
        if self.n_heads_ == 1:
            total = aleatoric  # one head cannot disagree with itself: exactly 0
        epistemic = np.maximum(total - aleatoric, 0.0)
        return uncertainty_frame(
            aleatoric + epistemic, aleatoric, epistemic, index=getattr(X, "index", None)
        )

    # -- task hooks ----------------------------------------------------------

    def _default_ensemble(self):
        return RandomForestClassifier(n_estimators=20, random_state=self.random_state)

    def _check_targets(self, y, fit_ensemble):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if fit_ensemble and len(np.unique(y)) < 2:
            raise ValueError(
                f"y has only one class ({np.unique(y)[0].item()!r}); the ensemble needs at "
                "least two classes to fit."
            )
        return y

    def _classes_hint(self, y):
        return None if y is None else np.unique(y)

    def _check_targets_against_teacher(self, y, teacher):
        unseen = np.setdiff1d(np.unique(y), teacher.classes_)
        if len(unseen):
            raise ValueError(
                f"y contains labels the ensemble never saw: {unseen.tolist()}; its "
                f"classes are {teacher.classes_.tolist()}."
            )

    def _targets_chunk(self, predictions, assignment, y):
        members = predictions
        mean = np.einsum("nmc,m->nc", members, assignment.sum(axis=0))[:, None]
        if assignment.shape[0] == assignment.shape[1] and np.all(
            assignment == np.diag(np.diag(assignment))
        ):
            heads = members  # one member per head: no mixing needed
        else:
            mixing = assignment / assignment.sum(1, keepdims=True)
            heads = np.einsum("nmc,hm->nhc", members, mixing)
        return (
            {"target": _tempered(mean, self.temperature)},
            {"target": _tempered(heads, self.temperature)},
        )

    def _finish_targets(self, targets1, targets2, y):
        self.classes_ = self._teacher.classes_

    def _criterion(self):
        return TemperedKLLoss(self.temperature)

    def _n_outputs(self, teacher):
        return len(teacher.classes_)


HydraDistilledClassifier.__doc__ = fill(HydraDistilledClassifier.__doc__)
