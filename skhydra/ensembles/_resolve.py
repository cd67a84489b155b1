"""Resolution: any supported ensemble -> a complete :class:`Teacher`, and fitting one.

Supported: fitted scikit-learn ensembles with interchangeable members in
``estimators_`` (forests, extra trees, bagging with ``estimators_features_``,
voting with ``weights``), lists of fitted estimators, a Pipeline ending in one
of these, :class:`~sklearn.frozen.FrozenEstimator` around any of them, lists
of torch modules, and :class:`MemberPredictions` computed elsewhere.
Single models, boosting and stacking are refused with the reason.
"""

import warnings
from dataclasses import replace

import numpy as np
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from ._kinds import (
    _name,
    accepts_nan,
    is_fitted,
    is_tree_model,
    refuse_if_unsupported,
    shared_preprocessing,
)
from ._members import (
    GaussianMember,
    PointMember,
    ProbaMember,
    TorchClassifierMember,
    TorchRegressorMember,
    VoteMember,
    _is_torch_module,
    supports_return_std,
    torch_forward,
    unwrap_frozen,
)
from ._precomputed import MemberPredictions, precomputed_teacher
from ._teacher import Teacher

__all__ = ["fit_ensemble", "resolve_teacher"]


def _task_of(model):
    try:
        if is_classifier(model):
            return "classifier"
        if is_regressor(model):
            return "regressor"
    except AttributeError:  # not a scikit-learn estimator (no __sklearn_tags__)
        return None
    return None


def _check_task(task, found, what):
    if found is None:
        raise TypeError(
            f"{what} is neither a classifier nor a regressor, so it cannot be a "
            "teacher; pass a fitted classification or regression ensemble."
        )
    if task is not None and task != found:
        raise ValueError(
            f"A {task} needs a {task} ensemble, but {what} is a {found}. Use "
            f"HydraDistilled{'Classifier' if found == 'classifier' else 'Regressor'}."
        )


def _union_classes(models):
    classes = [np.asarray(m.classes_) for m in models]
    kinds = {
        "number" if np.issubdtype(c.dtype, np.number) or c.dtype == bool else "label"
        for c in classes
    }
    if len(kinds) > 1:
        raise ValueError(
            "The members' classes_ cannot be aligned: some members were fitted on numeric "
            "labels and others on strings. Fit every member on the same kind of labels."
        )
    try:
        return np.unique(np.concatenate(classes))
    except TypeError as exc:
        raise ValueError(
            "The members' classes_ cannot be aligned: they mix label types "
            f"({exc}). Fit every member on the same kind of labels."
        ) from exc


def _sklearn_member(model, task, classes, *, columns=None, vote=False, **where):
    """The adapter of a scikit-learn member; ``columns`` maps its classes (default: by value)."""
    if task == "regressor":
        member = GaussianMember if supports_return_std(model) else PointMember
        return member(model, **where)
    if columns is None:
        columns = np.searchsorted(classes, np.asarray(model.classes_))
    if vote or not hasattr(model, "predict_proba"):
        return VoteMember(model, columns=columns, **where)
    return ProbaMember(model, columns=columns, **where)


def _encoded_columns(member_classes, classes):
    """Column map of a tree fitted by its forest on encoded labels 0..K-1, else None."""
    mc = np.asarray(member_classes)
    encoded = (
        not np.array_equal(mc, classes)
        and np.issubdtype(mc.dtype, np.number)
        and np.all(np.mod(mc, 1) == 0)
        and mc.max(initial=0) < len(classes)
    )
    return mc.astype(np.intp) if encoded else None


def _voting_weights(ensemble):
    if ensemble.weights is None:
        return None
    kept = dict(zip([n for n, _ in ensemble.estimators], ensemble.weights, strict=False))
    return np.array([kept[n] for n, est in ensemble.estimators if est != "drop"], float)


def _members_of_ensemble(ensemble, task):
    """Members, weights and classes of a fitted ensemble exposing ``estimators_``."""
    if getattr(ensemble, "n_outputs_", 1) != 1:
        raise ValueError(
            f"{_name(ensemble)} was fitted on {ensemble.n_outputs_} outputs; skhydra "
            "distils single-output ensembles. Fit one ensemble per output."
        )
    estimators = list(ensemble.estimators_)
    if not estimators:
        raise ValueError(f"{_name(ensemble)} has no fitted members in estimators_.")
    features = getattr(ensemble, "estimators_features_", None)
    is_voting = hasattr(ensemble, "voting") or _name(ensemble) == "VotingRegressor"
    # Forests and bagging validate X to an array before calling their members.
    as_array = not is_voting and (features is not None or hasattr(ensemble, "n_estimators"))
    vote = is_voting and getattr(ensemble, "voting", "soft") == "hard"
    weights = _voting_weights(ensemble) if is_voting else None
    classes = getattr(ensemble, "classes_", None)
    members = tuple(
        _sklearn_member(
            est,
            task,
            classes,
            columns=None if task == "regressor" else _encoded_columns(est.classes_, classes),
            vote=vote,
            features=None if features is None else np.asarray(features[i]),
            as_array=as_array,
        )
        for i, est in enumerate(estimators)
    )
    if vote:
        warnings.warn(
            f"{_name(ensemble)} uses hard voting, so each member is distilled as a "
            "one-hot vote; use voting='soft' to distil the members' probabilities.",
            UserWarning,
            stacklevel=4,
        )
    return members, weights, classes


def _members_of_list(models, task):
    tasks = {_task_of(m) for m in models}
    if None in tasks:
        bad = next(m for m in models if _task_of(m) is None)
        _check_task(task, None, f"The member {_name(bad)}")
    if len(tasks) > 1:
        raise ValueError(
            "The ensemble list mixes classifiers and regressors; all members must "
            "solve the same task."
        )
    found = tasks.pop()
    _check_task(task, found, "the ensemble list")
    n_features = {getattr(m, "n_features_in_", None) for m in models} - {None}
    if len(n_features) > 1:
        raise ValueError(
            f"The members were fitted on different numbers of features "
            f"{sorted(n_features)}; every member must take the same input."
        )
    classes = _union_classes(models) if found == "classifier" else None
    return found, tuple(_sklearn_member(m, found, classes) for m in models), classes


def _torch_teacher(modules, task, classes, X):
    """A teacher of torch modules; one forward pass on a row of ``X`` finds the output width."""
    if task is None:
        raise ValueError(
            "A list of torch modules does not say whether it classifies or "
            "regresses; pass task='classifier' or task='regressor'."
        )
    if X is None:
        raise ValueError(
            "A list of torch modules needs X (one row suffices) to find the width of its "
            "output before it predicts."
        )
    width = torch_forward(modules[0], np.asarray(X[:1], dtype=np.float32)).reshape(1, -1).shape[1]
    if task == "regressor":
        if width not in (1, 2):
            raise ValueError(
                f"The first torch member returned {width} outputs per row; a torch regressor "
                "member must return the mean, shape (n,) or (n, 1), or the mean and the "
                "variance, shape (n, 2)."
            )
        members = tuple(TorchRegressorMember(m, n_outputs=width) for m in modules)
        return Teacher(None, members, task, has_variance=width == 2)
    classes = np.arange(width) if classes is None else np.asarray(classes)
    if len(classes) != width:
        raise ValueError(
            f"The torch members return {width} logits per row, but {len(classes)} classes "
            f"were given ({classes.tolist()}); the logits are the classes in order."
        )
    members = tuple(TorchClassifierMember(m) for m in modules)
    return Teacher(None, members, task, classes_=classes)


def _normalised(weights):
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"The ensemble's weights {weights} must be non-negative.")
    return weights / weights.sum()


def _resolve_list(models, task, classes, X):
    # Each model of a list is a whole member (boosting models fitted with several
    # seeds are a seed ensemble): only a single boosting or stacking model is refused.
    if not is_fitted(models):
        raise NotFittedError("The ensemble's members are not fitted.")
    front = shared_preprocessing(models)
    if front is not None:
        inner = _resolve_list([unwrap_frozen(m)[-1] for m in models], task, classes, None)
        return replace(inner, preprocessor=front)
    torch_flags = [_is_torch_module(m) for m in models]
    if any(torch_flags) and not all(torch_flags):
        raise TypeError(
            "The ensemble list mixes torch modules and scikit-learn estimators; pass "
            "one kind (wrap torch modules in skorch nets to mix them)."
        )
    if all(torch_flags):
        return _torch_teacher(models, task, classes, X)
    found, members, found_classes = _members_of_list(models, task)
    return Teacher(
        None,
        members,
        found,
        classes_=found_classes,
        has_variance=all(isinstance(m, GaussianMember) for m in members),
        allows_nan=accepts_nan(models),
        tree_based=all(is_tree_model(m) for m in models),
        n_features_in_=getattr(models[0], "n_features_in_", None),
    )


def _resolve_estimator(ensemble, task):
    refuse_if_unsupported(ensemble)
    found = _task_of(ensemble)
    if found is not None and not is_fitted(ensemble):
        raise NotFittedError(
            f"{_name(ensemble)} is not fitted; fit it first, or pass it unfitted to a "
            "Hydra estimator, which fits it on (X, y)."
        )
    if hasattr(ensemble, "estimators_"):
        _check_task(task, found, _name(ensemble))
        members, weights, classes = _members_of_ensemble(ensemble, found)
        return Teacher(
            None,
            members,
            found,
            classes_=None if classes is None else np.asarray(classes),
            weights=_normalised(weights),
            has_variance=all(isinstance(m, GaussianMember) for m in members),
            allows_nan=accepts_nan(ensemble),
            tree_based=all(is_tree_model(m.model) for m in members),
            n_features_in_=getattr(ensemble, "n_features_in_", None),
        )
    if found is not None or _is_torch_module(ensemble):
        raise TypeError(
            f"{_name(ensemble)} is a single model, not an ensemble: it has no members "
            "whose disagreement Hydra could keep. Pass an ensemble (random forest, "
            "bagging, voting), a list of fitted models, or [model] to distil one model."
        )
    raise TypeError(
        f"Cannot use an object of type {_name(ensemble)} as an ensemble; pass a "
        "fitted scikit-learn ensemble, a list of fitted estimators or a list of "
        "torch modules."
    )


def _resolve(ensemble, task, classes, X):
    if isinstance(ensemble, Teacher):
        return ensemble
    if ensemble is None:
        raise ValueError("ensemble is None; pass a fitted ensemble.")
    if isinstance(ensemble, MemberPredictions):
        return precomputed_teacher(ensemble, task=task, X=X)
    if isinstance(ensemble, FrozenEstimator):
        return _resolve(ensemble.estimator, task, classes, X)
    if isinstance(ensemble, Pipeline):
        inner = _resolve(ensemble[-1], task, classes, None)
        front = ensemble[:-1]
        if inner.preprocessor is not None:
            front = Pipeline([("front", front), ("inner", inner.preprocessor)])
        return replace(inner, preprocessor=front)
    if isinstance(ensemble, (list, tuple)):
        if len(ensemble) == 0:
            raise ValueError("The ensemble list is empty; pass at least one fitted member.")
        return _resolve_list(list(ensemble), task, classes, X)
    return _resolve_estimator(ensemble, task)


def resolve_teacher(ensemble, *, task=None, classes=None, X=None):
    """Turn a fitted supported ensemble into a complete :class:`Teacher`.

    Parameters
    ----------
    ensemble : object
        A fitted supported ensemble (see :mod:`skhydra.ensembles`) or a
        :class:`Teacher`, returned as is.
    task : {"classifier", "regressor"}, default=None
        The expected task; required for a list of torch modules, checked
        against scikit-learn ensembles.
    classes : array-like, default=None
        Class labels of a torch classifier ensemble, in logit order; defaults
        to ``0, ..., n_classes - 1``.
    X : array-like of shape (n_samples, n_features), default=None
        Rows the ensemble takes; required for a list of torch modules, whose
        output width is found by one forward pass of its first row. For
        :class:`MemberPredictions`: the rows they were computed on (checked,
        and the only rows the teacher then labels).

    Returns
    -------
    Teacher

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra.ensembles import resolve_teacher
    >>> X, y = load_iris(return_X_y=True)
    >>> teacher = resolve_teacher(RandomForestClassifier(n_estimators=4).fit(X, y))
    >>> teacher.n_members, teacher.classes_.tolist()
    (4, [0, 1, 2])
    """
    if isinstance(ensemble, Teacher):
        return ensemble
    return replace(_resolve(ensemble, task, classes, X), ensemble=ensemble)


def _fit_one(model, X, y, sample_weight):
    model = clone(model)
    if sample_weight is None:
        return model.fit(X, y)
    return model.fit(X, y, sample_weight=sample_weight)


def fit_ensemble(ensemble, X, y, sample_weight=None):
    """Return a fitted ensemble: ``ensemble`` itself when fitted, else a fitted clone.

    Parameters
    ----------
    ensemble : object
        The ``ensemble`` parameter of a Hydra estimator (the default already
        built when it was None).
    X, y, sample_weight
        Data to fit an unfitted ensemble on.

    Returns
    -------
    object
        The fitted ensemble; a fitted ensemble is returned untouched.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra.ensembles._resolve import fit_ensemble
    >>> X, y = load_iris(return_X_y=True)
    >>> unfitted = RandomForestClassifier(n_estimators=3, random_state=0)
    >>> fitted = fit_ensemble(unfitted, X, y)
    >>> fitted is unfitted, len(fitted.estimators_), fit_ensemble(fitted, X, y) is fitted
    (False, 3, True)
    """
    if is_fitted(ensemble):
        return ensemble
    if y is None:
        raise ValueError(
            f"The ensemble {_name(ensemble)} is not fitted, so it requires y to be "
            "passed, but the target y is None; pass y or a fitted ensemble."
        )
    if isinstance(ensemble, (list, tuple)):
        return [_fit_one(m, X, y, sample_weight) for m in ensemble]
    refuse_if_unsupported(ensemble)
    return _fit_one(ensemble, X, y, sample_weight)
