"""The student's and the teacher's predictions of the rows a card is measured on."""

import warnings
from dataclasses import dataclass

import numpy as np

from ..uncertainty import teacher_uncertainty


@dataclass(frozen=True)
class _Evaluation:
    """One model's predictions of the evaluation rows.

    ``point`` is the mean prediction (probabilities, or the mean of y);
    ``means`` and ``variances`` the regression components (None for a
    classifier; variances None when unknown), ``weights`` their weights.
    """

    point: np.ndarray
    epistemic: np.ndarray
    epistemic_ood: np.ndarray = None
    means: np.ndarray = None
    variances: np.ndarray = None
    weights: np.ndarray = None


def _epistemic(estimator, X):
    with warnings.catch_warnings():
        # Only the epistemic part is used; an unknown aleatoric part does not matter here.
        warnings.filterwarnings("ignore", message=".*aleatoric uncertainty is unknown")
        return estimator.predict_uncertainty(X)["epistemic"].to_numpy()


def _evaluate_student(estimator, X, X_ood):
    epistemic = _epistemic(estimator, X)
    epistemic_ood = None if X_ood is None else _epistemic(estimator, X_ood)
    if hasattr(estimator, "classes_"):
        return _Evaluation(estimator.predict_proba(X), epistemic, epistemic_ood)
    means, variances = estimator.predict_members(X)
    known = estimator.target_encoding_.aleatoric_known
    return _Evaluation(
        estimator.predict(X),
        epistemic,
        epistemic_ood,
        means=means,
        variances=variances if known else None,
        weights=estimator.head_weights_,
    )


def _evaluate_teacher(estimator, X, X_ood):
    teacher = estimator.teacher_

    def members(rows):
        return teacher.predict_members(teacher.transform(rows), n_jobs=estimator.n_jobs)

    predictions = members(X)
    epistemic = teacher_uncertainty(teacher, predictions)[2]
    epistemic_ood = None if X_ood is None else teacher_uncertainty(teacher, members(X_ood))[2]
    if teacher.is_classifier:
        proba = np.average(predictions, axis=1, weights=teacher.weights)
        return _Evaluation(proba, epistemic, epistemic_ood)
    means, variances = predictions
    return _Evaluation(
        np.average(means, axis=1, weights=teacher.weights),
        epistemic,
        epistemic_ood,
        means=means,
        variances=variances if teacher.has_variance else None,
        weights=teacher.weights,
    )
