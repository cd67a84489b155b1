"""Member adapters: one object per ensemble member, with one prediction method.

Every adapter takes a chunk of rows as the ensemble takes them and returns
that member's prediction in the students' layout:

* classifiers: :meth:`probabilities` of shape (n, n_classes), float32, columns
  in the order of the teacher's classes;
* regressors: :meth:`gaussian`, a pair ``(means, variances)`` of shape (n,),
  the variances NaN for members that predict a point only.

Adapters are immutable and hold everything they need (column map, feature
subset, output width): nothing is discovered at prediction time.
"""

import inspect
from dataclasses import dataclass

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

__all__ = [
    "GaussianMember",
    "PointMember",
    "ProbaMember",
    "TorchClassifierMember",
    "TorchRegressorMember",
    "VoteMember",
    "torch_forward",
]


def _is_torch_module(obj):
    import torch

    return isinstance(obj, torch.nn.Module)


def unwrap_frozen(model):
    """The estimator inside any number of :class:`~sklearn.frozen.FrozenEstimator`."""
    while isinstance(model, FrozenEstimator):
        model = model.estimator
    return model


def supports_return_std(model):
    """Whether ``model.predict`` (or its Pipeline's last step) takes ``return_std``."""
    model = unwrap_frozen(model)
    last = unwrap_frozen(model[-1] if isinstance(model, Pipeline) else model)
    try:
        return "return_std" in inspect.signature(last.predict).parameters
    except (TypeError, ValueError):
        return False


def torch_forward(module, X):
    """Outputs of a torch module on ``X`` as a float32 array (eval mode, no gradients).

    The module's training flag is restored afterwards; tuple outputs are
    stacked as columns.
    """
    import torch

    params = next(module.parameters(), None)
    device = params.device if params is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            out = module(torch.as_tensor(np.asarray(X, dtype=np.float32), device=device))
    finally:
        module.train(was_training)
    if isinstance(out, (tuple, list)):
        out = torch.stack([o.reshape(len(X)) for o in out], dim=1)
    return out.float().cpu().numpy()


@dataclass(frozen=True, eq=False)
class _Member:
    """What every adapter holds: the model, and how it takes its input.

    ``features`` is the column subset the member was fitted on (bagging with
    ``max_features``); ``as_array`` says the member takes a numpy array
    (forests and bagging validate ``X`` into one before calling their trees).
    """

    model: object
    features: np.ndarray = None
    as_array: bool = False

    def _input(self, X, X_array):
        Xm = X_array if self.as_array else X
        if self.features is not None:
            Xm = Xm[:, self.features]
        return Xm


@dataclass(frozen=True, eq=False)
class ProbaMember(_Member):
    """A classifier with ``predict_proba``; ``columns`` maps its classes to the teacher's."""

    columns: np.ndarray = None

    def probabilities(self, X, X_array, n_classes):
        out = np.zeros((X.shape[0], n_classes), np.float32)
        out[:, self.columns] = self.model.predict_proba(self._input(X, X_array))
        return out


@dataclass(frozen=True, eq=False)
class VoteMember(_Member):
    """A classifier without usable probabilities: its label as a one-hot vote."""

    columns: np.ndarray = None

    def probabilities(self, X, X_array, n_classes):
        labels = np.asarray(self.model.predict(self._input(X, X_array)))
        own = np.searchsorted(np.asarray(self.model.classes_), labels)
        out = np.zeros((len(labels), n_classes), np.float32)
        out[np.arange(len(labels)), self.columns[own]] = 1.0
        return out


@dataclass(frozen=True, eq=False)
class TorchClassifierMember(_Member):
    """A torch module returning logits of shape (n, n_classes)."""

    def probabilities(self, X, X_array, n_classes):
        logits = torch_forward(self.model, self._input(X, X_array))
        if logits.ndim != 2 or logits.shape[1] != n_classes:
            raise ValueError(
                f"A torch member returned logits of shape {logits.shape}; expected "
                f"(n_samples, {n_classes})."
            )
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


@dataclass(frozen=True, eq=False)
class PointMember(_Member):
    """A regressor predicting a point: its mean, and a NaN variance."""

    def gaussian(self, X, X_array):
        mean = np.ravel(self.model.predict(self._input(X, X_array))).astype(np.float64)
        return mean, np.full_like(mean, np.nan)


@dataclass(frozen=True, eq=False)
class GaussianMember(_Member):
    """A regressor whose ``predict`` takes ``return_std=True``."""

    def gaussian(self, X, X_array):
        mean, std = self.model.predict(self._input(X, X_array), return_std=True)
        std = np.ravel(std).astype(np.float64)
        return np.ravel(mean).astype(np.float64), std**2


@dataclass(frozen=True, eq=False)
class TorchRegressorMember(_Member):
    """A torch module returning the mean, (n,) or (n, 1), or mean and variance, (n, 2)."""

    n_outputs: int = 1

    def gaussian(self, X, X_array):
        out = torch_forward(self.model, self._input(X, X_array)).reshape(len(X), -1)
        if out.shape[1] != self.n_outputs:
            raise ValueError(
                f"A torch member returned {out.shape[1]} outputs per row where the "
                f"ensemble's first member returned {self.n_outputs}; every torch regressor "
                "member must return the mean, shape (n,) or (n, 1), or the mean and the "
                "variance, shape (n, 2)."
            )
        mean = out[:, 0].astype(np.float64)
        if self.n_outputs == 1:
            return mean, np.full_like(mean, np.nan)
        if np.any(~(out[:, 1] > 0)):
            raise ValueError(
                "A torch member returned a non-positive second column; it must be the "
                "variance. If the module outputs a log-variance, wrap it to return "
                "exp(log_variance)."
            )
        return mean, out[:, 1].astype(np.float64)
