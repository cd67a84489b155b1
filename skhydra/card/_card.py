"""model_card: the card, section by section."""

from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.utils import check_scalar
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from ._evaluate import _evaluate_student, _evaluate_teacher
from ._plots import _draw_plots
from ._tables import (
    _CALIBRATION_NOTE,
    _EPISTEMIC,
    _FIDELITY_NOTE,
    _NO_TEACHER_NOTE,
    _OOD_NOTE,
    _architecture_table,
    _calibration_table,
    _fidelity_table,
    _ood_table,
    _pickled_size,
    _summary,
    _teacher_kind,
    _teacher_table,
    _training_table,
)


def model_card(
    estimator, X, y=None, *, X_ood=None, plot_dir=None, title=None, level=0.95, n_bins=15
):
    """Build a model card of a fitted Hydra student, measured on rows you pass.

    The card (a :class:`skops.card.Card`, written as Markdown by
    ``card.save(path)``) has these sections:

    * **Teacher**: the kind of ensemble, its members, classes and pickled size.
    * **Student**: architecture and size (body, heads, head rank, parameter
      count, bytes of weights against the teacher's pickled size), training
      (the phases' lengths, the epochs run in all, temperature, augmentation,
      head matching) and every hyperparameter (a folded table). The epochs
      run are counted over both phases together, as skorch's history holds
      them; each phase's number is its maximum.
    * **Fidelity to the teacher** on ``X``: agreement and
      ``KL(teacher, student)`` of the mean predictions (classifier) or the
      RMSE of the student's mean to the teacher's (regressor); the Spearman
      correlation of the student's epistemic uncertainty with the teacher's
      and the ratio of their means.
    * **Out-of-distribution detection** (with ``X_ood``): the AUROC of
      telling ``X_ood`` from ``X`` by epistemic uncertainty, student and
      teacher.
    * **Calibration** (with ``y``): NLL, Brier score, ECE and accuracy
      (classifier), or Gaussian NLL, CRPS, coverage of the central ``level``
      interval and RMSE (regressor), student and teacher.
    * **Plots** (with ``plot_dir``): the epistemic uncertainty of student
      against teacher, the reliability diagram (classifier with ``y``) and the
      in-domain against out-of-distribution histograms (with ``X_ood``).

    Numbers are printed to 4 significant digits. A student without its
    ensemble (:meth:`~skhydra.HydraDistilledClassifier.without_teacher`)
    gets a card without the teacher's numbers, which says so; pass such a
    copy to skip evaluating a slow teacher. There is no KL divergence for
    regressors: two Gaussian mixtures have no closed-form KL, and a teacher
    of point members (trees) has no density.

    The card needs skops (``pip install "skhydra[skops]"``), imported here;
    there is no plain-Markdown fallback, so every card has one layout and is
    the object skops' Hugging Face Hub tools take. The card holds no
    ensemble: its ``model`` is the student without its teacher, and no model
    diagram is drawn. The pickled sizes are counted by streaming the pickles
    into a byte counter; nothing is kept or written.

    Parameters
    ----------
    estimator : HydraDistilledClassifier or HydraDistilledRegressor
        A fitted student (for a Pipeline, pass its last step and the
        transformed rows).
    X : array-like or DataFrame of shape (n_samples, n_features)
        In-distribution evaluation rows, e.g. a held-out test set.
    y : array-like of shape (n_samples,), default=None
        True targets of ``X``; ``None`` leaves calibration out.
    X_ood : array-like or DataFrame of shape (n_ood, n_features), default=None
        Out-of-distribution rows; ``None`` leaves OOD detection out.
    plot_dir : str or path, default=None
        Folder (created if missing) to write the plots to as PNG files, which
        the card links by file name: save the card into the same folder,
        ``card.save(Path(plot_dir) / "README.md")`` (a Hugging Face Hub
        repository's layout). ``None`` draws no plots. Needs matplotlib.
    title : str, default=None
        The card's title; ``None`` names the student and its teacher.
    level : float, default=0.95
        Level of the central interval whose coverage is reported (regressor).
    n_bins : int, default=15
        Confidence bins of the ECE and the reliability diagram (classifier).

    Returns
    -------
    card : skops.card.Card
        ``card.render()`` is the Markdown text, ``card.save(path)`` writes
        it, and ``card.select("<title>/Fidelity to the teacher").table``
        holds a table's printed values.

    Raises
    ------
    ImportError
        When skops (or, with ``plot_dir``, matplotlib) is not installed.

    See Also
    --------
    skhydra.metrics : The metrics in the card.
    skhydra.plotting : The displays drawn into the plots.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier
    >>> from skhydra.card import model_card
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> hydra = HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=10, random_state=0
    ... ).fit(X)
    >>> card = model_card(hydra, X, y, X_ood=X + 5.0, title="Iris student")
    >>> print(card.render().splitlines()[1])
    # Iris student
    >>> card.select("Iris student/Fidelity to the teacher").table["Metric"][:2]
    ['Agreement', 'KL divergence to the teacher']
    """
    Card = _skops_card()
    _check_student(estimator)
    check_scalar(level, "level", Real, min_val=0, max_val=1, include_boundaries="neither")
    check_scalar(n_bins, "n_bins", Integral, min_val=1)
    student = _evaluate_student(estimator, X, X_ood)
    if y is not None:
        check_consistent_length(student.point, y)
        y = np.asarray(y)
    has_teacher = estimator.ensemble_ is not None
    teacher = _evaluate_teacher(estimator, X, X_ood) if has_teacher else None
    classifier = hasattr(estimator, "classes_")

    if title is None:
        kind = _teacher_kind(estimator.ensemble_) if has_teacher else "an ensemble"
        title = f"{type(estimator).__name__} distilled from {kind}"
    top = title.replace("/", "\\/")  # skops reads "/" in a key as a subsection
    card = Card(estimator.without_teacher(), model_diagram=False, template=None)
    card.add(**{top: _summary(estimator, student, teacher, y, X_ood)})
    teacher_size = _pickled_size(estimator.ensemble_) if has_teacher else None
    _add_table(card, top, "Teacher", _teacher_table(estimator, teacher_size))
    card.add(**{f"{top}/Student": ""})
    architecture = _architecture_table(estimator, teacher_size)
    _add_table(card, f"{top}/Student", "Architecture", architecture)
    _add_table(card, f"{top}/Student", "Training", _training_table(estimator))
    card.add_hyperparams(
        section=f"{top}/Student/Hyperparameters",
        description="The estimator's parameters (`get_params()`).",
    )
    if teacher is None:
        card.add(**{f"{top}/Fidelity to the teacher": _NO_TEACHER_NOTE})
    else:
        table = _fidelity_table(student, teacher, classifier)
        note = _FIDELITY_NOTE.format(n=len(student.point), what=_EPISTEMIC[classifier])
        _add_table(card, top, "Fidelity to the teacher", table, note)
    if X_ood is not None:
        note = _OOD_NOTE.format(n_in=len(student.point), n_out=len(student.epistemic_ood))
        _add_table(card, top, "Out-of-distribution detection", _ood_table(student, teacher), note)
    if y is None:
        card.add(**{f"{top}/Calibration": "Not measured: no true targets were given (`y=None`)."})
    else:
        table = _calibration_table(estimator, student, teacher, y, level, n_bins)
        _add_table(card, top, "Calibration", table, _CALIBRATION_NOTE)
    if plot_dir is not None:
        plots = _draw_plots(Path(plot_dir), estimator, student, teacher, y, n_bins)
        card.add(**{f"{top}/Plots": ""})
        for name, (file, description) in plots.items():
            card.add_plot(**{f"{top}/Plots/{name}": file}, description=description)
    return card


def _add_table(card, parent, title, table, description=None):
    key = f"{parent}/{title}"
    # skops 0.16's add_table titles a subsection with its whole key, "/"s included.
    card.add_table(**{key: table}, description=description).select(key).title = title


def _skops_card():
    try:
        from skops.card import Card
    except ImportError as exc:
        raise ImportError(
            'model_card needs skops, the model card library: pip install "skhydra[skops]"'
        ) from exc
    return Card


def _check_student(estimator):
    from .._base import BaseHydra

    if not isinstance(estimator, BaseHydra):
        raise TypeError(
            "model_card needs a fitted HydraDistilledClassifier or HydraDistilledRegressor, "
            f"got {type(estimator).__name__}; for a Pipeline, pass its last step and the "
            "rows transformed by the steps before it."
        )
    check_is_fitted(estimator)
