"""Shared base of the Hydra estimators: parameters, validation and the fit sequence."""

import copy
from abc import ABCMeta, abstractmethod
from dataclasses import replace
from numbers import Integral, Real

import joblib
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    check_memory,
    validate_data,
)

from ._augment import synthetic_rows
from ._storage import RowStore, parse_bytes
from ._training import train_two_phase
from .ensembles import (
    DEFAULT_BATCH_SIZE,
    _is_fitted,
    _unwrap_frozen,
    fit_teacher,
    iter_member_predictions,
    predict_transformed,
    resolve_teacher,
)
from .nn import HydraModule

__all__ = ["BaseHydra", "resolve_device"]


def resolve_device(device):
    """Turn the ``device`` parameter into a torch device string.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:<index>"``.

    Returns
    -------
    str

    Examples
    --------
    >>> from skhydra._base import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but no CUDA GPU is available "
                "(torch.cuda.is_available() is False); use device='auto' or 'cpu'."
            )
        index = device.partition(":")[2]
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ValueError(
                    f"device={device!r} names no available GPU; this machine has "
                    f"{torch.cuda.device_count()} (cuda:0 to "
                    f"cuda:{torch.cuda.device_count() - 1})."
                )
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}.")


def _like(rows, template):
    """Give synthetic ``rows`` the container type of the rows the teacher took."""
    if isinstance(template, pd.DataFrame):
        return pd.DataFrame(rows, columns=template.columns)
    return rows


def _writable(X):
    # torch.as_tensor warns on read-only arrays (pandas copy-on-write views).
    return X if X.flags.writeable else X.copy()


def _check_memory(memory):
    if isinstance(memory, str):
        # Memory-mapped reads: a cached array is not loaded whole into RAM.
        return joblib.Memory(location=memory, mmap_mode="r", verbose=0)
    return check_memory(memory)


def _cached_chunks(memory, teacher, X, n_jobs):
    """Chunks of the teacher's predictions of ``X`` through a joblib cache."""
    cached = memory.cache(predict_transformed, ignore=["n_jobs"])
    classes = teacher.classes_
    predictions = cached(teacher, X, n_jobs=n_jobs)
    if teacher.is_classifier and classes is None:
        # A cache hit skips the call that infers a torch ensemble's classes.
        teacher.classes_ = np.arange(predictions.shape[2])
    if not teacher.is_classifier and teacher._torch_outputs is None:
        kinds = {m.kind for m in teacher.members}
        if "torch" in kinds:
            teacher._torch_outputs = 2 if np.isfinite(predictions[1][:1]).all() else 1
    for start in range(0, X.shape[0], DEFAULT_BATCH_SIZE):
        stop = min(start + DEFAULT_BATCH_SIZE, X.shape[0])
        if teacher.is_classifier:
            yield start, stop, np.asarray(predictions[start:stop])
        else:
            yield start, stop, tuple(np.asarray(p[start:stop]) for p in predictions)


def _fixed_seed(random_state):
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class BaseHydra(BaseEstimator, metaclass=ABCMeta):
    """Base class of the Hydra students; not for direct use.

    Subclasses set ``_task`` and implement the task hooks: the default
    ensemble, label checks, the construction of head targets, the criterion,
    and the number of outputs per head.
    """

    _parameter_constraints = {
        "ensemble": "no_validation",
        "body_layer_sizes": [tuple, list],
        "head_layer_sizes": [tuple, list],
        "n_heads": [Interval(Integral, 1, None, closed="left"), None],
        "body": [None, type, torch.nn.Module],
        "body_params": [dict, None],
        "input_scaling": [StrOptions({"auto", "feature", "channel", "global"}), None],
        "phase1_epochs": [Interval(Integral, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "augmentation": [StrOptions({"noise", "mixup"}), None],
        "augmentation_factor": [Interval(Real, 0, None, closed="left")],
        "noise_scale": [Interval(Real, 0, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, None],
        "skorch_params": [dict, None],
        "memory_budget": [Interval(Integral, 0, None, closed="left"), str, None],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": [Integral, None],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "accelerator": [None, HasMethods(["prepare", "backward"])],
    }

    _task = None

    @abstractmethod
    def __init__(self):
        """Subclasses restate every parameter."""

    # -- task hooks --------------------------------------------------------

    @abstractmethod
    def _default_ensemble(self):
        """Unfitted ensemble used when ``ensemble`` is None."""

    @abstractmethod
    def _check_targets(self, y, fit_ensemble):
        """Validate ``y`` before the ensemble is fitted; return it as an array."""

    @abstractmethod
    def _check_targets_against_teacher(self, y, teacher):
        """Check ``y`` against a fitted teacher (labels it never saw)."""

    @abstractmethod
    def _targets_chunk(self, predictions, assignment, y):
        """Targets of a chunk of rows for phase 1 (one head) and phase 2 (all heads)."""

    @abstractmethod
    def _criterion(self):
        """The loss module."""

    @abstractmethod
    def _n_outputs(self, teacher):
        """Outputs per head."""

    # -- fit -----------------------------------------------------------------

    @_fit_context(
        # The ensemble may be fitted here, with its own parameter validation.
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y=None, sample_weight=None):
        """Distil the ensemble into a Hydra network.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The transfer set: rows the teacher labels and the student imitates.
        y : array-like of shape (n_samples,), default=None
            Targets. Needed only when the ensemble is fitted here (``None`` or
            an unfitted ensemble); with a fitted ensemble they are checked
            against it (classification) or used for the variance of
            point-prediction members (regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights of the distillation loss, also passed to the
            ensemble's ``fit`` when it is fitted here.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        for name in ("body_layer_sizes", "head_layer_sizes"):
            sizes = getattr(self, name)
            if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
                raise ValueError(f"{name} must be a tuple of positive integers, got {sizes!r}.")
        reserved = {
            "module",
            "criterion",
            "lr",
            "batch_size",
            "max_epochs",
            "train_split",
            "device",
            "verbose",
            "callbacks",
            "precision",
            "accelerator",
        } & set(self.skorch_params or {})
        if reserved:
            raise ValueError(
                f"skorch_params cannot set {sorted(reserved)}: the estimator sets them "
                "from its own parameters (lr, batch_size, max_epochs, device, verbose, "
                "callbacks, early_stopping, precision, accelerator)."
            )
        budget = parse_bytes(self.memory_budget)
        if self.accelerator is not None:
            self.device_ = str(self.accelerator.device)
        else:
            self.device_ = resolve_device(self.device)
        seed = _fixed_seed(self.random_state)

        pipeline_teacher = isinstance(_unwrap_frozen(self.ensemble), Pipeline)
        if pipeline_teacher:
            validate_data(self, X, skip_check_array=True)
        else:
            checked = self._validate_numeric(X, reset=True)
            # Members fitted on a DataFrame keep seeing it, with its column names.
            X = X if isinstance(X, pd.DataFrame) else checked
        if X.shape[0] == 0:
            raise ValueError("X is empty: fit needs at least one row.")
        fit_ensemble = self.ensemble is None or not _is_fitted(self.ensemble)
        if y is not None:
            check_consistent_length(X, y)
            y = self._check_targets(y, fit_ensemble)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)

        self.ensemble_, _ = fit_teacher(
            self.ensemble,
            X,
            y,
            sample_weight,
            task=self._task,
            default=self._default_ensemble,
        )
        teacher = resolve_teacher(self.ensemble_, self._task, self._classes_hint(y))
        self._teacher = teacher
        self.n_members_ = teacher.n_members
        self.n_heads_ = self.n_members_ if self.n_heads is None else self.n_heads
        if self.n_heads_ > self.n_members_:
            raise ValueError(
                f"n_heads={self.n_heads} exceeds the ensemble's {self.n_members_} "
                "members; use at most one head per member (or n_heads=None)."
            )
        X_teacher = teacher.transform(X)
        X_student = self._student_array(X_teacher)
        if teacher.n_features_in_ is not None and teacher.n_features_in_ != X_student.shape[1]:
            raise ValueError(
                f"X has {X_student.shape[1]} features, but the ensemble's members were "
                f"fitted on {teacher.n_features_in_}."
            )
        if y is not None:
            self._check_targets_against_teacher(y, teacher)
        if X_student.ndim > 2 and self.body is None:
            raise ValueError(
                f"X has rows of shape {X_student.shape[1:]}: inputs of more than two "
                "dimensions need a custom body (e.g. a CNN class as body=...); the default "
                "MLP body takes X of shape (n_samples, n_features)."
            )
        self.input_shape_ = X_student.shape[1:]

        rng = np.random.default_rng(seed)
        synthetic = synthetic_rows(
            X_student, self.augmentation, self.augmentation_factor, self.noise_scale, rng
        )
        n_real, n_synth = len(X_student), len(synthetic)
        weight = np.ones(n_real) if sample_weight is None else sample_weight
        if n_synth:
            X_student = np.concatenate([X_student, synthetic])
            weight = np.concatenate([weight, np.full(n_synth, weight.mean())])
        if y is not None:
            y = np.concatenate([y, np.full(n_synth, np.nan)]) if n_synth else y
        assignment = self._assignment(teacher.weights)
        self._head_weights = assignment.sum(axis=1)

        store = RowStore(budget)
        try:
            chunks = self._prediction_chunks(teacher, [X_teacher, _like(synthetic, X_teacher)])
            targets1, targets2 = self._collect_targets(chunks, len(X_student), assignment, y, store)
            targets1["weight"] = targets2["weight"] = weight.astype(np.float32)
            self._train(teacher, X_student, n_real, targets1, targets2, rng, seed)
        finally:
            store.close()
        # The split holds the validation rows and their targets: not needed once trained,
        # and most of the student's pickled size.
        self.net_.train_split = None
        return self

    def _train(self, teacher, X_student, n_real, targets1, targets2, rng, seed):
        valid_index = self._validation_rows(len(X_student), rng)
        loc, scale = self._scaling(X_student[:n_real])
        devices = [torch.device(self.device_).index or 0] if "cuda" in self.device_ else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            module = HydraModule(
                loc,
                scale,
                tuple(self.body_layer_sizes),
                tuple(self.head_layer_sizes),
                self._n_outputs(teacher),
                n_heads=1,
                body=self._make_body(),
                input_shape=self.input_shape_,
            )
            self.net_ = train_two_phase(
                module,
                self._criterion(),
                X_student,
                targets1,
                targets2,
                n_heads=self.n_heads_,
                phase1_epochs=self.phase1_epochs,
                phase2_epochs=self.max_epochs,
                lr=self.lr,
                weight_decay=self.weight_decay,
                batch_size=self._batch_size(
                    int(np.sum(~valid_index)) if valid_index is not None else len(X_student)
                ),
                valid_index=valid_index,
                n_iter_no_change=self.n_iter_no_change,
                device=self.device_,
                seed=seed,
                verbose=self.verbose,
                callbacks=self.callbacks,
                skorch_params=self.skorch_params,
                precision=self.precision,
                accelerator=self.accelerator,
            )

    def without_teacher(self):
        """Return a copy of the fitted student that no longer holds the ensemble.

        The copy predicts exactly like ``self`` (``predict``, ``predict_members``,
        ``predict_uncertainty``...) but keeps only what prediction needs: the
        trained network and, for a Pipeline teacher, its preprocessing steps.
        Pickle or ``joblib.dump`` it to serve the student without shipping the
        ensemble. Its ``ensemble`` parameter and ``ensemble_`` are None, so
        refitting the copy fits the default ensemble; refit the original
        instead. The network object is shared with ``self``.

        Returns
        -------
        student : estimator
            A fitted estimator of the same class.

        Examples
        --------
        >>> import pickle
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.ensemble import RandomForestClassifier
        >>> from skhydra import HydraDistilledClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
        >>> hydra = HydraDistilledClassifier(
        ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=5, random_state=0
        ... ).fit(X)
        >>> served = pickle.loads(pickle.dumps(hydra.without_teacher()))
        >>> bool((served.predict_proba(X) == hydra.predict_proba(X)).all())
        True
        >>> len(pickle.dumps(served)) < len(pickle.dumps(hydra))
        True
        """
        check_is_fitted(self)
        student = copy.copy(self)
        student.ensemble = None
        student.ensemble_ = None
        student._teacher = replace(
            self._teacher, ensemble=None, members=[], preprocessor=self._teacher.preprocessor
        )
        return student

    # -- teacher predictions and head targets --------------------------------

    def _prediction_chunks(self, teacher, parts):
        """Chunks ``(start, stop, predictions)`` over the rows of ``parts`` in turn."""
        offset = 0
        for rows in parts:
            n = rows.shape[0]
            if n == 0:
                continue
            if self.memory is None:
                chunks = iter_member_predictions(teacher, rows, n_jobs=self.n_jobs)
            else:
                chunks = _cached_chunks(_check_memory(self.memory), teacher, rows, self.n_jobs)
            for start, stop, chunk in chunks:
                yield offset + start, offset + stop, chunk
            offset += n

    def _collect_targets(self, chunks, n_rows, assignment, y, store):
        """Head targets of every row, built chunk by chunk into ``store``."""
        self._prepare_targets(y)
        targets = None
        for start, stop, predictions in chunks:
            parts = self._targets_chunk(
                predictions, assignment, None if y is None else y[start:stop]
            )
            if targets is None:
                targets = tuple(
                    {k: store.empty((n_rows, *v.shape[1:]), v.dtype) for k, v in part.items()}
                    for part in parts
                )
            for stored, part in zip(targets, parts, strict=True):
                for key, value in part.items():
                    stored[key][start:stop] = value
        self._finish_targets(*targets, y)
        return targets

    def _prepare_targets(self, y):
        """Hook run before the first chunk of targets."""

    def _finish_targets(self, targets1, targets2, y):
        """Hook run on the complete targets (in place)."""

    # -- helpers shared by fit and predict ------------------------------------

    def _classes_hint(self, y):
        return None

    def _assignment(self, member_weights):
        """Matrix (n_heads, n_members) of normalised member weights per head.

        Member ``m`` is distilled into head ``m % n_heads``; a head's target
        is the weighted mixture of its members, and its weight in the
        student's mixture is the sum of its members' weights.
        """
        m, h = self.n_members_, self.n_heads_
        w = np.full(m, 1.0 / m) if member_weights is None else member_weights
        assignment = np.zeros((h, m))
        assignment[np.arange(m) % h, np.arange(m)] = w
        return assignment

    def _scaling(self, X):
        """Location and scale of the input standardisation, per ``input_scaling``."""
        mode = self.input_scaling
        if mode == "auto":
            mode = "feature" if X.ndim == 2 else "channel"
        if mode is None:
            return np.zeros((), np.float32), np.ones((), np.float32)
        if mode == "feature":
            axes = (0,)
        elif mode == "channel":
            axes = (0, *range(2, X.ndim))
        else:
            axes = tuple(range(X.ndim))
        loc = X.mean(axis=axes, dtype=np.float64, keepdims=True)[0]
        scale = X.std(axis=axes, dtype=np.float64, keepdims=True)[0]
        scale[scale < 1e-12] = 1.0
        return loc.astype(np.float32), scale.astype(np.float32)

    def _make_body(self):
        """A fresh custom body, or None for the MLP."""
        body, params = self.body, self.body_params or {}
        if body is None:
            if params:
                raise ValueError(
                    f"body_params {sorted(params)} were given without a body class; they are "
                    "constructor arguments of body=."
                )
            return None
        if isinstance(body, type):
            if not issubclass(body, torch.nn.Module):
                raise TypeError(
                    f"body must be a torch.nn.Module class or instance, got the class "
                    f"{body.__name__}."
                )
            try:
                return body(**params)
            except TypeError as exc:
                raise TypeError(
                    f"Could not build the body {body.__name__}(**body_params) with "
                    f"body_params={params!r}: {exc}"
                ) from exc
        if params:
            raise ValueError(
                f"body_params {sorted(params)} apply to a body class, but body is an "
                f"instance of {type(body).__name__}; pass the class, or no body_params."
            )
        return copy.deepcopy(body)

    def get_params(self, deep=True):
        """Get parameters for this estimator.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained objects, and each entry of
            ``body_params`` as ``body__<name>``.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        if deep and isinstance(self.body_params, dict):
            for key, value in self.body_params.items():
                params[f"body__{key}"] = value
        return params

    def set_params(self, **params):
        """Set the parameters of this estimator.

        ``body__<name>=value`` sets the entry ``name`` of ``body_params`` (a
        constructor argument of the ``body`` class), so searches can tune it.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator instance
            Estimator instance.
        """
        body_args = {
            k[len("body__") :]: params.pop(k) for k in list(params) if k.startswith("body__")
        }
        if body_args:
            merged = params.pop("body_params", self.body_params)
            merged = dict(merged) if isinstance(merged, dict) else {}
            merged.update(body_args)
            params["body_params"] = merged
        return super().set_params(**params)

    def _batch_size(self, n_train):
        if self.batch_size != "auto":
            return self.batch_size
        # About 16 steps per epoch on small data, 256 rows per step on large data.
        return int(np.clip(n_train // 16, 16, 256))

    def _validation_rows(self, n_rows, rng):
        if not self.early_stopping:
            return None
        n_valid = int(np.floor(self.validation_fraction * n_rows))
        if n_valid < 2 or n_rows - n_valid < 2:
            return None
        index = np.zeros(n_rows, dtype=bool)
        index[rng.choice(n_rows, size=n_valid, replace=False)] = True
        return index

    def _validate_numeric(self, X, reset):
        try:
            return validate_data(
                self,
                X,
                reset=reset,
                dtype=np.float32,
                ensure_min_samples=1,
                allow_nd=True,
            )
        except (ValueError, TypeError) as exc:
            if isinstance(X, pd.DataFrame):
                bad = [
                    c
                    for c in X.columns
                    if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
                ]
                if bad:
                    raise ValueError(
                        f"X has non-numeric columns {bad}. Encode them first, or pass a "
                        "Pipeline teacher (preprocessing + ensemble) so the student "
                        "learns from the pipeline's numeric features."
                    ) from exc
            raise

    def _student_array(self, X_teacher):
        if sp.issparse(X_teacher):
            X_teacher = X_teacher.toarray()
        try:
            return _writable(check_array(X_teacher, dtype=np.float32, allow_nd=True))
        except ValueError as exc:
            raise ValueError(
                f"The teacher's preprocessing must produce finite numbers for the student: {exc}"
            ) from exc

    def _student_input(self, X):
        check_is_fitted(self)
        if self._teacher.preprocessor is not None:
            validate_data(self, X, reset=False, skip_check_array=True)
            return self._student_array(self._teacher.transform(X))
        X = _writable(self._validate_numeric(X, reset=False))
        if X.shape[1:] != self.input_shape_:
            raise ValueError(
                f"X has rows of shape {X.shape[1:]}, but the student was fitted on rows "
                f"of shape {self.input_shape_}."
            )
        return X

    def _forward(self, X):
        """Raw head outputs, a CPU tensor of shape (n_samples, n_heads, n_outputs)."""
        return torch.cat(list(self._forward_chunks(X)))

    def _forward_chunks(self, X):
        """Raw head outputs batch by batch (CPU tensors), without the whole array.

        ``X`` is checked now; the batches are computed as they are consumed.
        """
        X = self._student_input(X)

        def batches():
            with torch.no_grad():
                yield from self.net_.forward_iter(X)

        return batches()

    # -- scikit-learn protocol ---------------------------------------------

    def __sklearn_clone__(self):
        # A fitted ensemble is shared, not cloned: searches and cross-validation
        # reuse it instead of refitting (or unfitting) the teacher.
        params = self.get_params(deep=False)
        ensemble = params.pop("ensemble")
        try:
            keep = ensemble is not None and _is_fitted(ensemble)
        except ValueError:
            keep = False
        params = {k: clone(v, safe=False) for k, v in params.items()}
        params["ensemble"] = ensemble if keep else clone(ensemble, safe=False)
        return type(self)(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags
