"""Shared base of the Hydra estimators: the fit sequence and the prediction plumbing.

``fit`` reads as its steps: check the options, validate the data, fit and
resolve the teacher, build the transfer set, compute the heads' targets,
train, and set the fitted attributes. What differs between classification and
regression is three small methods of the subclasses that return values: the
default ensemble, the check of ``y``, and the *target encoding* (how the
teacher's predictions become head targets and how head outputs are read back).
"""

import copy
import itertools
from dataclasses import dataclass, replace

import joblib
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_sample_weight,
    _num_samples,
    check_array,
    check_consistent_length,
    check_is_fitted,
    check_memory,
    validate_data,
)

from ._body import BodyParamsMixin, make_body
from ._encoding import bin_edges, split_thresholds
from ._head_scale import fit_head_factors, held_out_rows, row_limit
from ._params import explicit_flag
from ._progress import row_progress
from ._rows import OutOfCoreRows, check_block, is_out_of_core
from ._storage import RowStore, parse_bytes
from ._targets import assign_heads, collect_targets
from ._training import RESERVED_SKORCH_PARAMS, train_two_phase
from ._transfer import augment, build_transfer_set, input_scaling, validation_rows
from .ensembles import resolve_teacher
from .ensembles._kinds import (
    SHARED_PREPROCESSING_FIX,
    accepts_nan,
    is_fitted,
    shared_preprocessing,
)
from .ensembles._members import unwrap_frozen
from .ensembles._oob import in_bag_rows, out_of_bag_view
from .ensembles._resolve import fit_ensemble
from .nn import HydraModule, PiecewiseLinear

__all__ = ["BaseHydra", "resolve_device"]

#: Rows per forward pass at prediction time.
PREDICT_ROWS = 4096

#: Rows of an out-of-core transfer set (a memmap, zarr or Dask array) that the synthetic rows
#: are drawn around: all of them up to this many, a random sample beyond.
AUGMENT_SAMPLE_ROWS = 100_000

#: Early stopping's patience with n_iter_no_change="auto": this many passes over the real
#: rows, within these bounds in epochs (benchmarks/tabular_fidelity.py: the fits of tree
#: students, five transfer rows per real row, found their best epoch early).
PATIENCE_REAL_PASSES = 60
PATIENCE_EPOCHS = (10, 30)

#: Real rows that the bin edges of the piecewise-linear encoding are computed on: all of
#: them up to this many, a random sample beyond (the edges are quantiles).
EDGE_SAMPLE_ROWS = 20_000


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
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but no CUDA GPU is available "
            "(torch.cuda.is_available() is False); use device='auto' or 'cpu'."
        )
    index = device.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} names no available GPU; this machine has "
            f"{torch.cuda.device_count()} (cuda:0 to cuda:{torch.cuda.device_count() - 1})."
        )
    return device


def _writable(X):
    # torch.as_tensor warns on read-only arrays (pandas copy-on-write views).
    return X if X.flags.writeable else X.copy()


@dataclass(frozen=True)
class _FitOptions:
    """What ``fit`` derives from the parameters before it touches the data."""

    device: str
    budget: int
    seed: int
    cache: object
    phase2_epochs: int


def _out_of_bag_chunk(chunk, in_bag):
    """A chunk of predictions of training rows, each row's members its out-of-bag view.

    Members are ranked as rank matching ranks them: classifiers by their
    expected class index, regressors by their mean.
    """
    if isinstance(chunk, tuple):
        means, variances = chunk
        both = out_of_bag_view(np.stack([means, variances], axis=-1), in_bag, means)
        return both[..., 0], both[..., 1]
    key = chunk @ np.arange(chunk.shape[-1], dtype=chunk.dtype)
    return out_of_bag_view(chunk, in_bag, key)


def _out_of_bag_weight(transfer, in_bag):
    """Phase 2's row weights: a training row without an out-of-bag view weighs nothing.

    Every member saw such a row (all rows of extra trees; a few rows of a small
    forest) and memorised it, so its members agree there as they agree nowhere
    else: the heads learn the spread from the synthetic rows and the rows that
    have a view. Without synthetic rows the weights stay.
    """
    if transfer.n_real == len(transfer):
        return transfer.weight
    weight = np.array(transfer.weight, dtype=np.float64)
    weight[: transfer.n_real][~in_bag.has_view()] = 0.0
    return weight


class BaseHydra(BodyParamsMixin, BaseEstimator):
    """Base class of the Hydra students; not for direct use.

    Subclasses declare their parameters (``_params.declare_parameters``) and
    implement ``_default_ensemble``, ``_check_y`` and ``_target_encoding``.
    """

    _task = None
    #: Whether the observed targets y enter the loss (they do for point regressors).
    _learns_from_y = False

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
        options = self._fit_options()
        X, y, sample_weight = self._validate_fit_data(X, y, sample_weight)
        ensemble, teacher = self._fit_teacher(X, y, sample_weight)
        X_teacher = teacher.transform(X)
        X_student = self._student_rows(teacher, X_teacher)
        n_heads = self._check_heads(teacher)
        rng = np.random.default_rng(options.seed)
        synthetic = self._synthetic_rows(teacher, X_teacher, X_student, rng, options.cache)
        observed = y if self._learns_from_y else None
        transfer = build_transfer_set(X_teacher, X_student, observed, sample_weight, synthetic)
        rank = self._matches_by_rank(teacher)
        heads = assign_heads(teacher.n_members, n_heads, teacher.weights, rank=rank)
        in_bag = self._in_bag(ensemble, teacher, rank, len(X_student))
        with RowStore(options.budget) as store:
            chunks = row_progress(
                self._prediction_chunks(teacher, transfer, options.cache, in_bag),
                len(transfer),
                "Teacher labels",
                self._bar_verbosity(),
            )
            # The encoding may depend on the teacher's first predictions (the regressor's
            # target scale without y): it sees the first chunk, which is then stored too.
            first = next(chunks)
            encoding = self._target_encoding(teacher, y, first[2])
            chunks = itertools.chain([first], chunks)
            targets = collect_targets(chunks, encoding, heads, transfer.y, len(transfer), store)
            for phase_targets in targets:
                phase_targets["weight"] = transfer.weight
            if in_bag is not None:
                targets[1]["weight"] = _out_of_bag_weight(transfer, in_bag)
            net, valid_index = self._train(
                transfer, targets, encoding, n_heads, teacher, rng, options
            )
            factors = (1.0, 1.0)
            matches = self._head_factors(teacher, n_heads)
            if any(matches):
                factors = self._fit_head_factors(
                    net.module_, transfer, targets[1], valid_index, encoding, heads, matches
                )
        self._set_fitted(ensemble, teacher, heads, encoding, net, X_student, options.device)
        if self._task == "classifier":
            self.head_scale_, self.head_spread_ = factors
        self.out_of_bag_ = in_bag is not None
        self.n_iter_no_change_ = self._patience(transfer)
        self.feature_encoding_ = (
            "piecewise" if isinstance(net.module_.encode, PiecewiseLinear) else None
        )
        return self

    def _fit_options(self):
        """Check the parameters that need more than their constraints; derive the options."""
        if self.phase1_epochs > self.max_epochs:
            raise ValueError(
                f"phase1_epochs={self.phase1_epochs} exceeds max_epochs={self.max_epochs}; "
                "max_epochs counts the epochs of both phases."
            )
        self._check_task_params()
        reserved = RESERVED_SKORCH_PARAMS & set(self.skorch_params or {})
        if reserved:
            raise ValueError(
                f"skorch_params cannot set {sorted(reserved)}: the estimator sets them "
                "from its own parameters (lr, batch_size, max_epochs, device, verbose, "
                "callbacks, early_stopping, precision, accelerator)."
            )
        if self.accelerator is not None:
            device = str(self.accelerator.device)
        else:
            device = resolve_device(self.device)
        cache = self.cache
        if isinstance(cache, str):
            # Memory-mapped reads: a cached array is not loaded whole into RAM.
            cache = joblib.Memory(location=cache, mmap_mode="r", verbose=0)
        return _FitOptions(
            device=device,
            budget=parse_bytes(self.memory_budget),
            seed=int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)),
            cache=None if cache is None else check_memory(cache),
            phase2_epochs=self.max_epochs - self.phase1_epochs,
        )

    def _validate_fit_data(self, X, y, sample_weight):
        ensemble = unwrap_frozen(self.ensemble)
        preprocessed = isinstance(ensemble, Pipeline) or shared_preprocessing(ensemble) is not None
        if self._reads_blocks(X, preprocessed):
            X = self._validate_out_of_core(X, preprocessed)
        elif preprocessed:
            # The Pipeline's own steps validate the raw rows.
            validate_data(self, X, skip_check_array=True)
        else:
            checked = self._validate_numeric(X, reset=True, allow_nan=self._teacher_takes_nan())
            # Members fitted on a DataFrame keep seeing it, with its column names.
            X = X if isinstance(X, pd.DataFrame) else checked
        if _num_samples(X) == 0:
            raise ValueError("X is empty: fit needs at least one row.")
        if y is not None:
            check_consistent_length(X, y)
            y = self._check_y(y, fit_ensemble=not self._ensemble_fitted())
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        return X, y, sample_weight

    def _reads_blocks(self, X, preprocessed):
        """Whether fit reads ``X`` from disk block by block.

        Zarr and Dask arrays always are (or are refused with the reason). A
        memmap is also an ndarray: it is read whole, as any estimator reads
        it, where the ensemble must be fitted on it or preprocesses it.
        """
        if not is_out_of_core(X):
            return False
        if not isinstance(X, np.memmap):
            return True
        return self._ensemble_fitted() and not preprocessed

    def _ensemble_fitted(self):
        return self.ensemble is not None and is_fitted(self.ensemble)

    def _validate_out_of_core(self, X, preprocessed):
        """Check a transfer set on disk in one pass over its rows; read it block by block."""
        what = type(X).__module__.partition(".")[0]
        what = "memmap" if isinstance(X, np.memmap) else f"{what} array"
        if preprocessed:
            raise ValueError(
                f"X is a {what}, read from disk block by block, but the ensemble has "
                "preprocessing steps, which take X whole; write the preprocessed rows to disk "
                "(e.g. block by block into a numpy.memmap) and pass the ensemble's last step."
            )
        if not self._ensemble_fitted():
            raise ValueError(
                f"X is a {what}, read from disk block by block, but the ensemble is not "
                "fitted; fitting it would load X whole. Fit the ensemble first (on a sample "
                "that fits in memory) and pass it fitted."
            )
        if not (np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)):
            raise ValueError(f"X is a {what} of dtype {X.dtype}; the student takes numbers.")
        validate_data(self, X, skip_check_array=True)
        X = OutOfCoreRows(X)
        X.scan(allow_nan=self._teacher_takes_nan())
        return X

    def _fit_teacher(self, X, y, sample_weight):
        ensemble = self._default_ensemble() if self.ensemble is None else self.ensemble
        ensemble = fit_ensemble(ensemble, X, y, sample_weight)
        classes = np.unique(y) if y is not None and self._task == "classifier" else None
        teacher = resolve_teacher(ensemble, task=self._task, classes=classes, X=X)
        if classes is not None:
            unseen = np.setdiff1d(classes, teacher.classes_)
            if len(unseen):
                raise ValueError(
                    f"y contains labels the ensemble never saw: {unseen.tolist()}; its "
                    f"classes are {teacher.classes_.tolist()}."
                )
        return ensemble, teacher

    def _teacher_takes_nan(self):
        """Whether the ensemble (the default one when None) takes NaN, by its tags."""
        return accepts_nan(self._default_ensemble() if self.ensemble is None else self.ensemble)

    def _student_rows(self, teacher, X_teacher):
        if isinstance(X_teacher, OutOfCoreRows):
            return X_teacher  # checked in one pass by _validate_out_of_core
        X_student = self._student_array(X_teacher, teacher.allows_nan)
        if teacher.n_features_in_ is not None and teacher.n_features_in_ != X_student.shape[1]:
            raise ValueError(
                f"X has {X_student.shape[1]} features, but the ensemble's members were "
                f"fitted on {teacher.n_features_in_}."
            )
        if X_student.ndim > 2 and np.isnan(X_student).any():
            raise ValueError(
                "X has missing values (NaN) in rows of more than two dimensions; the student "
                "fills missing values of tables (2-D X) only."
            )
        if X_student.ndim > 2 and self.body is None:
            raise ValueError(
                f"X has rows of shape {X_student.shape[1:]}: inputs of more than two "
                "dimensions need a custom body (e.g. a CNN class as body=...); the default "
                "MLP body takes X of shape (n_samples, n_features)."
            )
        return X_student

    def _check_heads(self, teacher):
        n_heads = teacher.n_members if self.n_heads is None else self.n_heads
        if n_heads > teacher.n_members:
            raise ValueError(
                f"n_heads={self.n_heads} exceeds the ensemble's {teacher.n_members} "
                "members; use at most one head per member (or n_heads=None)."
            )
        return n_heads

    def _matches_by_rank(self, teacher):
        """Whether the heads imitate the members' ranks (``head_matching``; "auto" decides)."""
        if self.head_matching != "auto":
            return self.head_matching == "rank"
        equal = teacher.weights is None or np.allclose(teacher.weights, teacher.weights[0])
        return teacher.tree_based and equal

    def _synthetic_rows(self, teacher, X_teacher, X_student, rng, cache):
        """The transfer set's synthetic rows (``augmentation``), in the student's input space."""
        adds_rows = self.augmentation is not None and teacher.labels_new_rows
        if isinstance(X_student, OutOfCoreRows) and adds_rows:
            # Rows on disk: the synthetic rows (in memory) are drawn around a bounded sample.
            X_teacher = X_student = X_student.sample(AUGMENT_SAMPLE_ROWS, rng)
        return augment(
            teacher,
            X_teacher,
            X_student,
            self.augmentation,
            self.augmentation_factor,
            self.noise_scale,
            rng,
            n_jobs=self.n_jobs,
            cache=cache,
            verbose=self._bar_verbosity(),
        )

    def _bar_verbosity(self):
        """``verbose`` for the progress bars of fit: the main process only under Accelerate."""
        if self.accelerator is None or self.accelerator.is_main_process:
            return self.verbose
        return 0

    def _prediction_chunks(self, teacher, transfer, cache, in_bag=None):
        """The teacher's prediction chunks over the real rows, then the synthetic ones.

        With ``in_bag``, the real rows' members are their out-of-bag view.
        """
        offset = 0
        for rows in transfer.teacher_parts:
            for start, stop, chunk in teacher.iter_predictions(
                rows, n_jobs=self.n_jobs, cache=cache
            ):
                if in_bag is not None and offset == 0:
                    chunk = _out_of_bag_chunk(chunk, in_bag.mask(start, stop))
                yield offset + start, offset + stop, chunk
            offset += rows.shape[0]

    def _in_bag(self, ensemble, teacher, rank, n_rows):
        """The ensemble's bootstrap samples when its training rows get their out-of-bag view."""
        required = explicit_flag(self.out_of_bag)  # None: "auto"
        if required is False:
            return None
        in_bag = in_bag_rows(ensemble, teacher.n_members)
        if not rank:
            reason = (
                "the heads imitate members, not ranks (head_matching), and the out-of-bag "
                "view is of ranks"
            )
        elif in_bag is None:
            reason = (
                "the ensemble does not say which rows its members were fitted on (random "
                "forests, extra trees and bagging do)"
            )
        elif in_bag.n_rows > n_rows or (in_bag.n_rows < n_rows and not required):
            reason = (
                f"the ensemble was fitted on {in_bag.n_rows} rows and X has {n_rows}: X must "
                "be the ensemble's training rows, in their order (with out_of_bag=True, "
                "followed by other rows)"
            )
        else:
            # out_of_bag=True and more rows: the training rows first, then rows no member saw.
            return in_bag.with_new_rows(n_rows - in_bag.n_rows)
        if required:
            raise ValueError(f"out_of_bag=True, but {reason}.")
        return None

    def _feature_edges(self, teacher, transfer, loc, scale, options):
        """Edges of the piecewise-linear encoding (scaled units) or None: ``feature_encoding``."""
        if self.feature_encoding is None:
            return None
        tabular = transfer.X.ndim == 2
        if self.feature_encoding == "piecewise" and not tabular:
            raise ValueError(
                f"feature_encoding='piecewise' encodes the features of a table (2-D X); X has "
                f"rows of shape {transfer.X.shape[1:]}."
            )
        auto = self.feature_encoding == "auto"
        if auto and not (teacher.tree_based and tabular and self.body is None):
            return None
        # The edges come from at most EDGE_SAMPLE_ROWS real rows (all of them, or a sample
        # drawn alike in memory and on disk).
        rng = np.random.default_rng(options.seed)
        if isinstance(transfer.X, np.ndarray):
            real = transfer.X[: transfer.n_real]
            if len(real) > EDGE_SAMPLE_ROWS:
                real = real[np.sort(rng.choice(len(real), EDGE_SAMPLE_ROWS, replace=False))]
        else:
            real = transfer.X.first.sample(EDGE_SAMPLE_ROWS, rng)
        thresholds = split_thresholds(teacher, real.shape[1]) if teacher.tree_based else None
        if auto and thresholds is None:
            # Edges at the values' quantiles rather than the splits were measured to hurt
            # (benchmarks/tabular_fidelity.py): "auto" encodes only at readable splits.
            return None
        edges = bin_edges(real, self.n_bins, thresholds)
        if all(e is None for e in edges):
            return None  # no feature to encode (codes, counts, pixel intensities)
        loc = np.broadcast_to(np.asarray(loc, np.float64), (real.shape[1],))
        scale = np.broadcast_to(np.asarray(scale, np.float64), (real.shape[1],))
        return [None if e is None else (e - loc[j]) / scale[j] for j, e in enumerate(edges)]

    def _train(self, transfer, targets, encoding, n_heads, teacher, rng, options):
        valid_index = (
            validation_rows(len(transfer), self.validation_fraction, rng)
            if self.early_stopping
            else None
        )
        n_train = len(transfer) if valid_index is None else int(np.sum(~valid_index))
        # Tables whose teacher takes NaN: learned fills, and indicators for the
        # features missing in the real rows.
        takes_nan = teacher.allows_nan and transfer.X.ndim == 2
        if isinstance(transfer.X, np.ndarray):
            real = transfer.X[: transfer.n_real]
            loc, scale = input_scaling(real, self.input_scaling)
            missing = np.flatnonzero(np.isnan(real).any(axis=0)) if takes_nan else None
        else:  # rows on disk: what the pass of _validate_out_of_core found
            statistics = transfer.X.first.statistics
            loc, scale = statistics.scaling(self.input_scaling)
            missing = statistics.missing if takes_nan else None
        edges = self._feature_edges(teacher, transfer, loc, scale, options)
        devices = [torch.device(options.device).index or 0] if "cuda" in options.device else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(options.seed)
            module = HydraModule(
                loc,
                scale,
                tuple(self.body_layer_sizes),
                tuple(self.head_layer_sizes),
                encoding.n_outputs,
                n_heads=1,
                body=make_body(self.body, self.body_params),
                input_shape=transfer.X.shape[1:],
                missing=missing,
                head_rank=self.head_rank,
                planned_heads=n_heads,
                edges=edges,
            )
            net = train_two_phase(
                module,
                encoding.criterion(),
                transfer.X,
                targets,
                n_heads=n_heads,
                phase1_epochs=self.phase1_epochs,
                phase2_epochs=options.phase2_epochs,
                lr=self.lr,
                weight_decay=self.weight_decay,
                batch_size=self._batch_size(n_train),
                valid_index=valid_index,
                n_iter_no_change=self._patience(transfer),
                device=options.device,
                seed=options.seed,
                verbose=self.verbose,
                callbacks=self.callbacks,
                skorch_params=self.skorch_params,
                precision=self.precision,
                accelerator=self.accelerator,
            )
        return net, valid_index

    def _check_task_params(self):
        """Check the task's own parameters against the others (before any work)."""

    def _head_factors(self, teacher, n_heads):
        """Whether the heads' logits get their factors after training: (scale, spread).

        Classifiers only (``match_aleatoric``, ``match_epistemic``).
        """
        return False, False

    def _fit_head_factors(self, module, transfer, phase2, valid_index, encoding, heads, matches):
        """Choose the factors of the heads' outputs on held-out rows and fold them into them.

        On validation rows (see :func:`skhydra._head_scale.held_out_rows`;
        fewer of them for many heads and classes,
        :func:`skhydra._head_scale.row_limit`) the heads' mean entropy is made
        that of their phase-2 targets (``matches[0]``) and their mean
        disagreement too (``matches[1]``); returns ``(scale, spread)``, 1.0 for
        a factor not chosen or without such rows.
        """
        limit = row_limit(len(heads.head_weights), encoding.n_outputs)
        rows = held_out_rows(valid_index, phase2["weight"], len(transfer), limit)
        if len(rows) == 0:
            return 1.0, 1.0
        device = next(module.parameters()).device
        module.eval()
        with torch.inference_mode():
            logits = torch.cat(
                [
                    module(torch.as_tensor(transfer.X[block], device=device)).float().cpu()
                    for block in np.array_split(rows, max(1, len(rows) // PREDICT_ROWS))
                ]
            )
        weights = torch.as_tensor(heads.head_weights, dtype=torch.float64)
        entropy, epistemic = encoding.head_uncertainty(phase2["target"][rows], weights)
        scale, spread = fit_head_factors(
            logits, entropy if matches[0] else None, epistemic if matches[1] else None, weights
        )
        if spread != 1.0:
            module.heads.spread_outputs(spread, heads.head_weights)
        module.heads.scale_outputs(scale)
        return scale, spread

    def _patience(self, transfer):
        """Early stopping's patience in epochs (``n_iter_no_change``; "auto" decides)."""
        if self.n_iter_no_change != "auto":
            return self.n_iter_no_change
        # 60 passes over the real rows: 30 epochs of a transfer set with one synthetic row per
        # real row, fewer when the synthetic rows make each epoch several passes.
        passes = PATIENCE_REAL_PASSES * transfer.n_real / len(transfer)
        return int(np.clip(round(passes), *PATIENCE_EPOCHS))

    def _set_fitted(self, ensemble, teacher, heads, encoding, net, X_student, device):
        """Every fitted attribute, in one place."""
        self.ensemble_ = ensemble
        self.teacher_ = teacher
        self.n_members_ = teacher.n_members
        self.n_heads_ = len(heads.head_weights)
        self.head_matching_ = "rank" if heads.rank else "member"
        self.head_rank_ = net.module_.head_rank
        self.member_heads_ = heads.member_heads
        self.head_weights_ = heads.head_weights
        self.target_encoding_ = encoding
        self.input_shape_ = X_student.shape[1:]
        self.net_ = net
        self.device_ = device
        if self._task == "classifier":
            self.classes_ = teacher.classes_

    def _batch_size(self, n_train):
        if self.batch_size != "auto":
            return self.batch_size
        # About 16 steps per epoch on small data, 256 rows per step on large data.
        return int(np.clip(n_train // 16, 16, 256))

    # -- input ----------------------------------------------------------------

    def _validate_numeric(self, X, reset, allow_nan=False):
        try:
            return validate_data(
                self,
                X,
                reset=reset,
                dtype=np.float32,
                ensure_min_samples=1,
                allow_nd=True,
                ensure_all_finite="allow-nan" if allow_nan else True,
            )
        except (ValueError, TypeError) as exc:
            if isinstance(X, pd.DataFrame):
                bad = [
                    c
                    for c in X.columns
                    if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
                ]
                if bad and isinstance(self.ensemble, (list, tuple)):
                    raise ValueError(
                        f"X has non-numeric columns {bad}, and the members do not share one "
                        "preprocessing the student could learn from (they are not all "
                        "Pipelines whose steps before the last were fitted alike); "
                        f"{SHARED_PREPROCESSING_FIX}."
                    ) from exc
                if bad:
                    raise ValueError(
                        f"X has non-numeric columns {bad}. Encode them first, or pass a "
                        "Pipeline teacher (preprocessing + ensemble) so the student "
                        "learns from the pipeline's numeric features."
                    ) from exc
            raise

    def _student_array(self, X_teacher, allow_nan):
        if sp.issparse(X_teacher):
            X_teacher = X_teacher.toarray()
        finite = "allow-nan" if allow_nan else True
        try:
            return _writable(
                check_array(X_teacher, dtype=np.float32, allow_nd=True, ensure_all_finite=finite)
            )
        except ValueError as exc:
            raise ValueError(
                f"The teacher's preprocessing must produce finite numbers for the student: {exc}"
            ) from exc

    def _student_input(self, X):
        check_is_fitted(self)
        allow_nan = self.teacher_.allows_nan
        if self.teacher_.preprocessor is not None:
            validate_data(self, X, reset=False, skip_check_array=True)
            return self._student_array(self.teacher_.transform(X), allow_nan)
        if is_out_of_core(X):  # read and checked block by block (_head_outputs)
            validate_data(self, X, reset=False, skip_check_array=True)
            X = OutOfCoreRows(X)
        else:
            X = _writable(self._validate_numeric(X, reset=False, allow_nan=allow_nan))
        if X.shape[1:] != self.input_shape_:
            raise ValueError(
                f"X has rows of shape {X.shape[1:]}, but the student was fitted on rows "
                f"of shape {self.input_shape_}."
            )
        return X

    def _head_outputs(self, X):
        """Raw head outputs block by block: CPU float32 tensors (rows, n_heads, n_outputs).

        ``X`` is checked when this is called; the blocks are computed as they
        are consumed, without the student's training machinery.
        """
        X = self._student_input(X)
        module = self.net_.module_
        device = next(module.parameters()).device
        autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"
        )

        def blocks():
            module.eval()
            with torch.inference_mode(), autocast:
                for start in range(0, len(X), PREDICT_ROWS):
                    rows = X[start : start + PREDICT_ROWS]
                    if isinstance(X, OutOfCoreRows):
                        check_block(rows, start, self.teacher_.allows_nan)
                    yield module(torch.as_tensor(rows, device=device)).float().cpu()

        return blocks()

    # -- serving --------------------------------------------------------------

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
        ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=10, random_state=0
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
        student.teacher_ = replace(self.teacher_, ensemble=None, members=())
        return student

    # -- scikit-learn protocol ----------------------------------------------

    def __sklearn_clone__(self):
        # A fitted ensemble is shared, not cloned: searches and cross-validation
        # reuse it instead of refitting (or unfitting) the teacher.
        def keep(ensemble):
            try:
                return ensemble is not None and is_fitted(ensemble)
            except ValueError:
                return False

        return clone_sharing(self, "ensemble", keep)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._teacher_takes_nan()
        tags.input_tags.sparse = False
        return tags


def clone_sharing(estimator, name, keep):
    """``clone(estimator)``, except that parameter ``name`` is shared when ``keep(value)``.

    The ``__sklearn_clone__`` of meta-estimators around a fitted model (the
    students' ``ensemble``, the conformal wrappers' ``estimator``): the fitted
    model is used as it is, never refit, so clones share it rather than copy
    it; every other parameter is cloned as :func:`sklearn.base.clone` does.
    """
    params = estimator.get_params(deep=False)
    shared = params.pop(name)
    params = {k: clone(v, safe=False) for k, v in params.items()}
    params[name] = shared if keep(shared) else clone(shared, safe=False)
    return type(estimator)(**params)
