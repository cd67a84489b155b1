"""Teacher adapters: any supported ensemble -> per-member predictions.

A *teacher* is the ensemble a Hydra student distils. This module turns every
supported kind of ensemble into a flat list of members and computes their
predictions in one layout, the same layout the students'
``predict_members`` use:

* classification: probabilities of shape (n_samples, n_members, n_classes),
  columns aligned on the union of the members' classes;
* regression: a pair ``(means, variances)`` of shape (n_samples, n_members),
  the variances NaN for members that predict a point only.

Supported ensembles: fitted scikit-learn ensembles with interchangeable members
in ``estimators_`` (random forests, extra trees, bagging with
``estimators_features_``, voting with ``weights``), lists of fitted estimators
(scikit-learn, skorch, Pipelines, Hydra students), a Pipeline whose last step is
one of these (the members then see the pipeline's transformed input),
:class:`~sklearn.frozen.FrozenEstimator` around any of them, and lists of
:class:`torch.nn.Module`. A torch classifier member maps a float32 tensor of
shape (n, n_features) to logits of shape (n, n_classes); a torch regressor
member returns the mean, of shape (n,) or (n, 1), or the mean and the
**variance** (not the log-variance) as two columns of shape (n, 2).
"""

import inspect
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "Teacher",
    "fit_teacher",
    "iter_member_predictions",
    "predict_members",
    "predict_transformed",
    "resolve_teacher",
]

#: Rows per chunk when members predict; bounds the size of the temporaries.
DEFAULT_BATCH_SIZE = 8192

_REFUSED = {
    "GradientBoostingClassifier": "boosting",
    "GradientBoostingRegressor": "boosting",
    "HistGradientBoostingClassifier": "boosting",
    "HistGradientBoostingRegressor": "boosting",
    "AdaBoostClassifier": "boosting",
    "AdaBoostRegressor": "boosting",
    "StackingClassifier": "stacking",
    "StackingRegressor": "stacking",
    "XGBClassifier": "boosting",
    "XGBRegressor": "boosting",
    "LGBMClassifier": "boosting",
    "LGBMRegressor": "boosting",
    "CatBoostClassifier": "boosting",
    "CatBoostRegressor": "boosting",
}

_WHY = {
    "boosting": (
        "it is a boosting ensemble, whose members are fitted in sequence, each "
        "correcting the sum of the previous ones, so no single member is a model of "
        "the data and their disagreement is not uncertainty"
    ),
    "stacking": (
        "it is a stacking ensemble, whose final estimator combines the base models' "
        "outputs, so they are inputs to one model rather than interchangeable members"
    ),
}


@dataclass
class _Member:
    model: object
    kind: str  # "proba", "vote", "point", "gaussian", "torch"
    features: np.ndarray = None
    columns: np.ndarray = None  # member output column -> teacher class index
    as_array: bool = False


@dataclass
class Teacher:
    """A resolved ensemble: flat members, weights, classes and preprocessing.

    Built by :func:`resolve_teacher`; accepted wherever an ensemble is.

    Attributes
    ----------
    ensemble : object
        The fitted ensemble this teacher was resolved from.
    members : list
        One adapter per member, in the ensemble's order.
    is_classifier : bool
        Whether the members are classifiers.
    weights : ndarray of shape (n_members,) or None
        Member weights normalised to sum to one (voting ensembles), or None
        for equal weights.
    classes_ : ndarray of shape (n_classes,) or None
        The union of the members' classes (classification).
    preprocessor : transformer or None
        Fitted steps in front of the members (a Pipeline teacher).
    n_features_in_ : int or None
        Number of features the members (after ``preprocessor``) expect, when known.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import BaggingClassifier
    >>> from skhydra.ensembles import resolve_teacher
    >>> X, y = load_iris(return_X_y=True)
    >>> bag = BaggingClassifier(n_estimators=3, max_features=2, random_state=0).fit(X, y)
    >>> teacher = resolve_teacher(bag)
    >>> teacher.n_members, [len(m.features) for m in teacher.members]
    (3, [2, 2, 2])
    """

    ensemble: object
    members: list
    is_classifier: bool
    weights: np.ndarray = None
    classes_: np.ndarray = None
    preprocessor: object = None
    n_features_in_: int = None
    _torch_outputs: int = field(default=None, repr=False)

    @property
    def n_members(self):
        return len(self.members)

    @property
    def has_variance(self):
        """Whether every member predicts a variance (regression)."""
        if self.is_classifier:
            return False
        if self.members[0].kind == "torch":
            if self._torch_outputs is None:
                raise RuntimeError(
                    "Whether torch members give variances is known once they have "
                    "predicted; call predict_members(teacher, X) first."
                )
            return self._torch_outputs == 2
        return all(m.kind == "gaussian" for m in self.members)

    def transform(self, X):
        """Apply the teacher's preprocessing (identity without one)."""
        return X if self.preprocessor is None else self.preprocessor.transform(X)


def _is_torch_module(obj):
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, torch.nn.Module)


def _is_fitted(model):
    if _is_torch_module(model):
        return True
    if isinstance(model, (list, tuple)):
        if len(model) == 0:
            raise ValueError("The ensemble list is empty; pass at least one member.")
        states = [_is_fitted(m) for m in model]
        if any(states) and not all(states):
            raise ValueError(
                "The ensemble list mixes fitted and unfitted members; pass all fitted "
                "(they are used as they are) or all unfitted (they are fitted in fit)."
            )
        return bool(states) and states[0]
    if type(model).__name__ == "FrozenEstimator":
        return True
    try:
        check_is_fitted(model)
    except NotFittedError:
        return False
    except TypeError:
        return True
    return True


def _name(obj):
    return type(obj).__name__


def _refuse_if_unsupported(model):
    reason = _REFUSED.get(_name(model))
    if reason is not None:
        raise TypeError(
            f"{_name(model)} cannot be distilled by Hydra: {_WHY[reason]}. Pass an "
            "ensemble of interchangeable members instead: a random forest, extra "
            "trees, bagging, voting, or a list of independently fitted models (for "
            "example the same model fitted with several random seeds)."
        )


def _task_of(model):
    if _is_torch_module(model):
        return None
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


def _unwrap_frozen(model):
    while type(model).__name__ == "FrozenEstimator":
        model = model.estimator
    return model


def _supports_return_std(model):
    last = _unwrap_frozen(model[-1] if isinstance(model, Pipeline) else model)
    try:
        return "return_std" in inspect.signature(last.predict).parameters
    except (TypeError, ValueError):
        return False


def _class_columns(member_classes, teacher_classes, encoded):
    member_classes = np.asarray(member_classes)
    if encoded:
        return member_classes.astype(np.intp)
    return np.searchsorted(teacher_classes, member_classes)


def _union_classes(models):
    try:
        return np.unique(np.concatenate([np.asarray(m.classes_) for m in models]))
    except TypeError as exc:
        raise ValueError(
            "The members' classes_ cannot be aligned: they mix label types "
            f"({exc}). Fit every member on the same kind of labels."
        ) from exc


def _sklearn_member(
    model, task, classes, *, features=None, encoded=False, vote=False, as_array=False
):
    if task == "classifier":
        has_proba = hasattr(model, "predict_proba") and not vote
        columns = _class_columns(model.classes_, classes, encoded)
        kind = "proba" if has_proba else "vote"
        return _Member(model, kind, features, columns, as_array)
    kind = "gaussian" if _supports_return_std(model) else "point"
    return _Member(model, kind, features, None, as_array)


def _members_of_ensemble(ensemble, task):
    """Members of a fitted scikit-learn ensemble exposing ``estimators_``."""
    if getattr(ensemble, "n_outputs_", 1) != 1:
        raise ValueError(
            f"{_name(ensemble)} was fitted on {ensemble.n_outputs_} outputs; skhydra "
            "distils single-output ensembles. Fit one ensemble per output."
        )
    estimators = list(ensemble.estimators_)
    if not estimators:
        raise ValueError(f"{_name(ensemble)} has no fitted members in estimators_.")
    features = getattr(ensemble, "estimators_features_", None)
    # Forests and bagging validate X to an array before calling their members.
    as_array = features is not None or hasattr(ensemble, "n_estimators")
    weights = None
    vote = False
    if hasattr(ensemble, "voting") or _name(ensemble) == "VotingRegressor":
        as_array = False
        vote = getattr(ensemble, "voting", "soft") == "hard"
        if ensemble.weights is not None:
            names = [name for name, est in ensemble.estimators if est != "drop"]
            kept = dict(zip([n for n, _ in ensemble.estimators], ensemble.weights, strict=False))
            weights = np.array([kept[n] for n in names], dtype=np.float64)
    classes = getattr(ensemble, "classes_", None)
    members = []
    for i, est in enumerate(estimators):
        encoded = False
        if task == "classifier":
            mc = np.asarray(est.classes_)
            encoded = (
                not np.array_equal(mc, classes)
                and np.issubdtype(mc.dtype, np.number)
                and np.all(np.mod(mc, 1) == 0)
                and mc.max(initial=0) < len(classes)
            )
        members.append(
            _sklearn_member(
                est,
                task,
                classes,
                features=None if features is None else np.asarray(features[i]),
                encoded=encoded,
                vote=vote,
                as_array=as_array,
            )
        )
    if vote:
        import warnings

        warnings.warn(
            f"{_name(ensemble)} uses hard voting, so each member is distilled as a "
            "one-hot vote; use voting='soft' to distil the members' probabilities.",
            UserWarning,
            stacklevel=3,
        )
    return members, weights, classes


def _members_of_list(models, task, classes_hint):
    torch_flags = [_is_torch_module(m) for m in models]
    if any(torch_flags) and not all(torch_flags):
        raise TypeError(
            "The ensemble list mixes torch modules and scikit-learn estimators; pass "
            "one kind (wrap torch modules in skorch nets to mix them)."
        )
    if all(torch_flags):
        if task is None:
            raise ValueError(
                "A list of torch modules does not say whether it classifies or "
                "regresses; pass task='classifier' or task='regressor'."
            )
        return [_Member(m, "torch") for m in models], None, classes_hint
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
    members = [_sklearn_member(m, found, classes) for m in models]
    return members, None, classes


def resolve_teacher(ensemble, task=None, classes=None):
    """Turn a fitted supported ensemble into a :class:`Teacher`.

    Parameters
    ----------
    ensemble : object
        A fitted supported ensemble (see the module documentation) or a
        :class:`Teacher`, returned as is.
    task : {"classifier", "regressor"}, default=None
        The expected task; required for a list of torch modules, checked
        against scikit-learn ensembles.
    classes : array-like, default=None
        Class labels of a torch classifier ensemble, in logit order; defaults
        to ``0, ..., n_classes - 1``.

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
    if ensemble is None:
        raise ValueError("ensemble is None; pass a fitted ensemble.")
    if type(ensemble).__name__ == "FrozenEstimator":
        return resolve_teacher(ensemble.estimator, task, classes)
    if isinstance(ensemble, Pipeline):
        inner = resolve_teacher(ensemble[-1], task, classes)
        front = ensemble[:-1]
        if inner.preprocessor is not None:
            front = Pipeline([("front", front), ("inner", inner.preprocessor)])
        inner.preprocessor = front
        inner.ensemble = ensemble
        return inner
    _refuse_if_unsupported(ensemble)
    if isinstance(ensemble, (list, tuple)):
        if len(ensemble) == 0:
            raise ValueError("The ensemble list is empty; pass at least one fitted member.")
        for model in ensemble:
            _refuse_if_unsupported(model)
        if not _is_fitted(list(ensemble)):
            raise NotFittedError("The ensemble's members are not fitted.")
        members, weights, found_classes = _members_of_list(list(ensemble), task, classes)
        n_features = getattr(ensemble[0], "n_features_in_", None)
        is_clf = (
            task == "classifier"
            if members[0].kind == "torch"
            else (_task_of(ensemble[0]) == "classifier")
        )
    elif _task_of(ensemble) is not None and not _is_fitted(ensemble):
        raise NotFittedError(
            f"{_name(ensemble)} is not fitted; fit it first, or pass it unfitted to a "
            "Hydra estimator, which fits it on (X, y)."
        )
    elif hasattr(ensemble, "estimators_"):
        found = _task_of(ensemble)
        _check_task(task, found, _name(ensemble))
        members, weights, found_classes = _members_of_ensemble(ensemble, found)
        n_features = getattr(ensemble, "n_features_in_", None)
        is_clf = found == "classifier"
    elif _task_of(ensemble) is not None or _is_torch_module(ensemble):
        raise TypeError(
            f"{_name(ensemble)} is a single model, not an ensemble: it has no members "
            "whose disagreement Hydra could keep. Pass an ensemble (random forest, "
            "bagging, voting), a list of fitted models, or [model] to distil one model."
        )
    else:
        raise TypeError(
            f"Cannot use an object of type {_name(ensemble)} as an ensemble; pass a "
            "fitted scikit-learn ensemble, a list of fitted estimators or a list of "
            "torch modules."
        )
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"The ensemble's weights {weights} must be non-negative.")
        weights = weights / weights.sum()
    return Teacher(
        ensemble=ensemble,
        members=members,
        is_classifier=is_clf,
        weights=weights,
        classes_=None if found_classes is None else np.asarray(found_classes),
        n_features_in_=n_features,
    )


def _fit_one(model, X, y, sample_weight):
    model = clone(model)
    if sample_weight is None:
        return model.fit(X, y)
    return model.fit(X, y, sample_weight=sample_weight)


def fit_teacher(ensemble, X, y, sample_weight=None, task=None, default=None):
    """Return a fitted ensemble: ``ensemble`` itself when fitted, else a fitted clone.

    Parameters
    ----------
    ensemble : object or None
        The ``ensemble`` parameter of a Hydra estimator.
    X, y, sample_weight
        Data to fit an unfitted ensemble on.
    task : {"classifier", "regressor"}
        The estimator's task.
    default : callable
        Builds the default ensemble when ``ensemble`` is None.

    Returns
    -------
    fitted : object
        The fitted ensemble; a fitted ensemble is returned untouched.
    was_fitted_here : bool

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra.ensembles import fit_teacher
    >>> X, y = load_iris(return_X_y=True)
    >>> unfitted = RandomForestClassifier(n_estimators=3, random_state=0)
    >>> fitted, fitted_here = fit_teacher(unfitted, X, y, task="classifier")
    >>> fitted is unfitted, fitted_here, len(fitted.estimators_)
    (False, True, 3)
    >>> fit_teacher(fitted, X, y)[0] is fitted  # a fitted ensemble is returned untouched
    True
    """
    if ensemble is None:
        ensemble = default()
    elif _is_fitted(ensemble):
        return ensemble, False
    if y is None:
        raise ValueError(
            f"The ensemble {_name(ensemble)} is not fitted, so it requires y to be "
            "passed, but the target y is None; pass y or a fitted ensemble."
        )
    if isinstance(ensemble, (list, tuple)):
        for model in ensemble:
            _refuse_if_unsupported(model)
        return [_fit_one(m, X, y, sample_weight) for m in ensemble], True
    _refuse_if_unsupported(ensemble)
    return _fit_one(ensemble, X, y, sample_weight), True


def _slice_rows(X, start, stop):
    return X.iloc[start:stop] if hasattr(X, "iloc") else X[start:stop]


def _member_input(member, X_chunk, X_array):
    Xm = X_array if member.as_array else X_chunk
    if member.features is not None:
        Xm = Xm[:, member.features]
    return Xm


def _torch_predict(module, X):
    import torch

    params = next(module.parameters(), None)
    device = params.device if params is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.as_tensor(np.asarray(X, dtype=np.float32), device=device))
    finally:
        module.train(was_training)
    if isinstance(out, (tuple, list)):
        out = torch.stack([o.reshape(len(X)) for o in out], dim=1)
    return out.detach().float().cpu().numpy()


def _predict_chunk_classifier(members, first, X_chunk, X_array, out):
    n_classes = out.shape[-1]
    for j, member in enumerate(members, start=first):
        Xm = _member_input(member, X_chunk, X_array)
        if member.kind == "torch":
            logits = _torch_predict(member.model, Xm)
            if logits.ndim != 2 or logits.shape[1] != n_classes:
                raise ValueError(
                    f"Torch member {j} returned logits of shape {logits.shape}; "
                    f"expected (n_samples, {n_classes})."
                )
            logits = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            out[:, j - first] = p / p.sum(axis=1, keepdims=True)
        elif member.kind == "proba":
            out[:, j - first] = 0.0
            out[:, j - first, member.columns] = member.model.predict_proba(Xm)
        else:
            labels = np.asarray(member.model.predict(Xm))
            index = member.columns[np.searchsorted(np.asarray(member.model.classes_), labels)]
            out[:, j - first] = 0.0
            out[np.arange(len(index)), j - first, index] = 1.0


def _predict_chunk_regressor(teacher, members, first, X_chunk, X_array, means, variances):
    for j, member in enumerate(members, start=first):
        Xm = _member_input(member, X_chunk, X_array)
        if member.kind == "torch":
            out = _torch_predict(member.model, Xm).reshape(len(Xm), -1)
            if out.shape[1] not in (1, 2) or out.shape[1] != teacher._torch_outputs:
                raise ValueError(
                    f"Torch member {j} returned {out.shape[1]} outputs per row; every "
                    "torch regressor member must return the mean, shape (n,) or (n, 1), "
                    "or the mean and the variance, shape (n, 2)."
                )
            means[:, j - first] = out[:, 0]
            if out.shape[1] == 2:
                if np.any(~(out[:, 1] > 0)):
                    raise ValueError(
                        f"Torch member {j} returned a non-positive second column; it "
                        "must be the variance. If the module outputs a log-variance, "
                        "wrap it to return exp(log_variance)."
                    )
                variances[:, j - first] = out[:, 1]
        elif member.kind == "gaussian":
            mean, std = member.model.predict(Xm, return_std=True)
            means[:, j - first] = np.ravel(mean)
            variances[:, j - first] = np.ravel(std) ** 2
        else:
            means[:, j - first] = np.ravel(member.model.predict(Xm))


def _torch_output_width(teacher, X):
    out = _torch_predict(teacher.members[0].model, _slice_rows(X, 0, 1))
    return out.reshape(1, -1).shape[1]


def predict_members(ensemble, X, *, task=None, classes=None, batch_size=None, n_jobs=None):
    """Every member's prediction of a supported ensemble, in the students' layout.

    Parameters
    ----------
    ensemble : object
        A fitted supported ensemble (see :mod:`skhydra.ensembles`) or a
        :class:`Teacher`.
    X : array-like or DataFrame of shape (n_samples, n_features)
        Input rows, as the ensemble (or its Pipeline) takes them.
    task : {"classifier", "regressor"}, default=None
        Required for a list of torch modules; checked otherwise.
    classes : array-like, default=None
        Class labels of a torch classifier ensemble (see :func:`resolve_teacher`).
    batch_size : int, default=None
        Rows per chunk; ``None`` uses ``DEFAULT_BATCH_SIZE``.
    n_jobs : int, default=None
        Members predict in parallel over ``n_jobs`` joblib workers (threads
        by default; the active :func:`joblib.parallel_config` backend, e.g.
        dask or ray, when one is set). ``None`` means 1, ``-1`` all cores.

    Returns
    -------
    probabilities : ndarray of shape (n_samples, n_members, n_classes)
        For classification: float32 probabilities, columns in the order of the
        teacher's ``classes_``; a member that never saw a class gives it 0.
    (means, variances) : tuple of ndarray of shape (n_samples, n_members)
        For regression: float64 means and variances, the variances NaN for
        members that predict a point only.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra.ensembles import predict_members
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    >>> predict_members(forest, X).shape
    (150, 5, 3)
    """
    teacher = resolve_teacher(ensemble, task, classes)
    return predict_transformed(teacher, teacher.transform(X), batch_size, n_jobs=n_jobs)


def predict_transformed(teacher, X, batch_size=None, *, n_jobs=None):
    """:func:`predict_members` for rows already through ``teacher.preprocessor``.

    Parameters
    ----------
    teacher : Teacher
        A resolved teacher (:func:`resolve_teacher`).
    X : array-like or DataFrame of shape (n_samples, n_features)
        Rows as the members take them, i.e. ``teacher.transform(rows)``.
    batch_size : int, default=None
        Rows per chunk; ``None`` uses ``DEFAULT_BATCH_SIZE``.
    n_jobs : int, default=None
        Parallel workers over members, see :func:`predict_members`.

    Returns
    -------
    Same as :func:`predict_members`.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhydra.ensembles import predict_members, predict_transformed, resolve_teacher
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(), RandomForestClassifier(4, random_state=0))
    >>> teacher = resolve_teacher(pipe.fit(X, y))
    >>> direct = predict_transformed(teacher, teacher.transform(X))
    >>> bool((direct == predict_members(pipe, X)).all())
    True
    """
    chunks = iter_member_predictions(teacher, X, batch_size, n_jobs=n_jobs)
    if teacher.is_classifier:
        out = np.empty((X.shape[0], teacher.n_members, len(teacher.classes_)), np.float32)
        for start, stop, chunk in chunks:
            out[start:stop] = chunk
        return out
    means = np.empty((X.shape[0], teacher.n_members))
    variances = np.full((X.shape[0], teacher.n_members), np.nan)
    for start, stop, (m, v) in chunks:
        means[start:stop], variances[start:stop] = m, v
    return means, variances


def _member_groups(n_members, n_jobs):
    n_groups = min(n_members, effective_n_jobs(n_jobs))
    bounds = np.linspace(0, n_members, n_groups + 1).round().astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _predict_group(teacher, first, stop, X_chunk, X_array, n_classes):
    members = teacher.members[first:stop]
    n = X_chunk.shape[0]
    if teacher.is_classifier:
        out = np.empty((n, len(members), n_classes), np.float32)
        _predict_chunk_classifier(members, first, X_chunk, X_array, out)
        return out
    means = np.empty((n, len(members)))
    variances = np.full((n, len(members)), np.nan)
    _predict_chunk_regressor(teacher, members, first, X_chunk, X_array, means, variances)
    return means, variances


def iter_member_predictions(teacher, X, batch_size=None, *, n_jobs=None):
    """Every member's predictions, one chunk of rows at a time.

    The building block of :func:`predict_transformed` for callers that store
    the predictions themselves (the students write them to a memory-bounded
    store): at most one chunk of predictions is in memory at a time.

    Parameters
    ----------
    teacher : Teacher
        A resolved teacher (:func:`resolve_teacher`).
    X : array-like or DataFrame of shape (n_samples, n_features)
        Rows as the members take them, i.e. ``teacher.transform(rows)``.
    batch_size : int, default=None
        Rows per chunk; ``None`` uses ``DEFAULT_BATCH_SIZE``.
    n_jobs : int, default=None
        Parallel workers over members, see :func:`predict_members`.

    Returns
    -------
    chunks : iterator of (int, int, predictions)
        ``(start, stop, predictions)`` for the rows ``X[start:stop]``, the
        predictions in the layout of :func:`predict_members`. ``batch_size``
        is checked and a torch ensemble's classes are found when the function
        is called; the chunks are computed as they are consumed.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra.ensembles import iter_member_predictions, resolve_teacher
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    >>> teacher = resolve_teacher(forest)
    >>> [(a, b, p.shape) for a, b, p in iter_member_predictions(teacher, X, batch_size=100)]
    [(0, 100, (100, 4, 3)), (100, 150, (50, 4, 3))]
    """
    n_samples = X.shape[0]
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    kinds = {m.kind for m in teacher.members}
    n_classes = None
    if teacher.is_classifier:
        if teacher.classes_ is None:
            teacher.classes_ = np.arange(_torch_output_width(teacher, X))
        n_classes = len(teacher.classes_)
    elif "torch" in kinds and teacher._torch_outputs is None:
        teacher._torch_outputs = _torch_output_width(teacher, X)
    needs_array = any(m.as_array for m in teacher.members)
    groups = _member_groups(teacher.n_members, n_jobs)
    parallel = Parallel(n_jobs=len(groups), prefer="threads") if len(groups) > 1 else None

    # The checks and the teacher's classes above happen now; chunks as consumed.
    def chunks():
        for start in range(0, n_samples, batch_size):
            stop = min(start + batch_size, n_samples)
            X_chunk = _slice_rows(X, start, stop)
            X_array = np.asarray(X_chunk) if needs_array else None
            if parallel is None:
                yield (
                    start,
                    stop,
                    _predict_group(teacher, 0, teacher.n_members, X_chunk, X_array, n_classes),
                )
                continue
            parts = parallel(
                delayed(_predict_group)(teacher, a, b, X_chunk, X_array, n_classes)
                for a, b in groups
            )
            if teacher.is_classifier:
                yield start, stop, np.concatenate(parts, axis=1)
            else:
                yield (
                    start,
                    stop,
                    tuple(np.concatenate(p, axis=1) for p in zip(*parts, strict=True)),
                )

    return chunks()
