"""What the displays share: matplotlib imported lazily, axes, legend labels, score checks."""

import warnings

import numpy as np
from sklearn.utils import check_array

from ..uncertainty import COLUMNS, predict_uncertainty, teacher_view


def _axes(ax):
    """``(ax, figure)``, creating both when ``ax`` is None."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("skhydra.plotting needs matplotlib: pip install matplotlib") from exc
    if ax is None:
        _, ax = plt.subplots()
    return ax, ax.figure


class _Display:
    """The scaffolding every display's ``plot`` starts with."""

    def _start_plot(self, ax, name, metric):
        """Create or take the axes; return the legend label ``name (metric)``."""
        self.ax_, self.figure_ = _axes(ax)
        name = self.name if name is None else name
        return metric if name is None else f"{name} ({metric})"


def _scores(values, name):
    values = check_array(values, ensure_2d=False, dtype=np.float64, input_name=name)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per row), got shape {values.shape}.")
    return values


def _check_kind(kind):
    if kind not in COLUMNS:
        raise ValueError(f"kind must be one of {COLUMNS}, got {kind!r}.")


def _uncertainty(model, X, kind):
    with warnings.catch_warnings():
        if kind == "epistemic":
            # Point-prediction regressors lack only the aleatoric part, which is not shown.
            warnings.filterwarnings("ignore", message=".*predict no variance", category=UserWarning)
        return predict_uncertainty(model, X)[kind].to_numpy()


def _teacher_uncertainty(student, X, kind):
    """The uncertainty of the student's own fitted ensemble on ``X``."""
    return _uncertainty(*teacher_view(student, X, hint="; pass teacher="), kind)
