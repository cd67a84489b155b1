"""The card's tables and texts: numbers formatted as printed."""

import pickle
from collections import Counter

import numpy as np
from sklearn.metrics import accuracy_score, root_mean_squared_error
from sklearn.pipeline import Pipeline

from ..metrics import (
    agreement,
    brier_score,
    crps_gaussian_mixture,
    expected_calibration_error,
    gaussian_mixture_nll,
    interval_coverage,
    kl_to_teacher,
    negative_log_likelihood,
    ood_auroc,
    uncertainty_spearman,
)

#: Classes listed by name in the teacher table; more are counted.
MAX_CLASSES_SHOWN = 10

_NO_TEACHER = "n/a (no teacher)"


def _fmt(value):
    """A number as printed in the card: 4 significant digits, ``n/a`` for NaN."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def _size(n_bytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024


class _ByteCounter:
    """A file-like sink that counts what is written to it."""

    def __init__(self):
        self.n_bytes = 0

    def write(self, data):
        self.n_bytes += memoryview(data).nbytes


def _pickled_size(obj):
    """Bytes of ``obj``'s pickle, counted as it streams (never held in memory), or None."""
    counter = _ByteCounter()
    try:
        pickle.dump(obj, counter, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return counter.n_bytes


def _teacher_kind(ensemble):
    """A short description of an ensemble: its class, or its members' classes."""
    name = type(ensemble).__name__
    if isinstance(ensemble, Pipeline):
        return f"Pipeline({', '.join(type(step).__name__ for _, step in ensemble.steps)})"
    if name == "FrozenEstimator":
        return f"FrozenEstimator({_teacher_kind(ensemble.estimator)})"
    if isinstance(ensemble, (list, tuple)):
        counts = Counter(type(member).__name__ for member in ensemble)
        return f"a {name} of " + ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return name


def _table(rows, columns=("Property", "Value")):
    return {column: [row[i] for row in rows] for i, column in enumerate(columns)}


# -- sections -----------------------------------------------------------------

_FIDELITY_NOTE = (
    "How closely the student imitates its teacher on the {n} evaluation rows. Epistemic "
    "uncertainty is the disagreement of the members (of the student's heads): {what}."
)
_EPISTEMIC = {
    True: "their mutual information, in nats",
    False: "the variance of their means, in squared units of y",
}
_NO_TEACHER_NOTE = (
    "Not measured: this student holds no teacher (it was made by `without_teacher()`). "
    "Build the card from the student fitted with its ensemble to compare them."
)
_OOD_NOTE = (
    "How well epistemic uncertainty tells {n_out} out-of-distribution rows from the {n_in} "
    "evaluation rows (AUROC: 0.5 is chance, 1 perfect)."
)
_CALIBRATION_NOTE = (
    "Against the true targets of the evaluation rows. Accuracy: higher is better; coverage: "
    "the closer to the interval's level the better; the others: lower is better."
)


def _summary(estimator, student, teacher, y, X_ood):
    from .. import __version__

    task = "classifier" if hasattr(estimator, "classes_") else "regressor"
    rows = f"{len(student.point)} evaluation rows"
    if y is not None:
        rows += " with true targets"
    if X_ood is not None:
        rows += f" and {len(student.epistemic_ood)} out-of-distribution rows"
    text = (
        f"A Hydra student ({type(estimator).__name__}): one network with a shared body and "
        f"{estimator.n_heads_} heads, distilled from an ensemble of {estimator.n_members_} "
        f"{task}s so that it predicts like the ensemble and reports its uncertainty "
        "(`predict_uncertainty`: total, aleatoric and epistemic parts). Made with skhydra "
        f"{__version__} (`skhydra.card.model_card`) on {rows}."
    )
    if teacher is None:
        text += " The student holds no teacher, so the card has no numbers of the teacher."
    return text


def _teacher_table(estimator, size):
    teacher = estimator.teacher_
    ensemble = estimator.ensemble_
    rows = [
        ["Ensemble", _teacher_kind(ensemble) if ensemble is not None else _NO_TEACHER],
        ["Members", str(estimator.n_members_)],
    ]
    if teacher.weights is None:
        rows.append(["Member weights", "equal"])
    else:
        rows.append(["Member weights", ", ".join(_fmt(w) for w in teacher.weights)])
    if teacher.is_classifier:
        classes = teacher.classes_.tolist()
        shown = ", ".join(map(str, classes[:MAX_CLASSES_SHOWN]))
        if len(classes) > MAX_CLASSES_SHOWN:
            shown += f", ... ({len(classes)} in all)"
        rows.append(["Classes", shown])
    else:
        rows.append(["Members predict a variance", "yes" if teacher.has_variance else "no"])
    rows.append(["Tree-based members", "yes" if teacher.tree_based else "no"])
    if teacher.preprocessor is not None:
        steps = getattr(teacher.preprocessor, "steps", [])
        rows.append(["Preprocessing", ", ".join(type(step).__name__ for _, step in steps)])
    rows.append(["Pickled size", _NO_TEACHER if ensemble is None else _size_or_na(size)])
    return _table(rows)


def _size_or_na(n_bytes):
    return "n/a (not picklable)" if n_bytes is None else _size(n_bytes)


def _architecture_table(estimator, teacher_size):
    module = estimator.net_.module_
    n_parameters = sum(p.numel() for p in module.parameters())
    weight_bytes = sum(
        t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())
    )
    if estimator.body is None:
        body = f"MLP, hidden widths {tuple(estimator.body_layer_sizes)}"
    else:
        body = f"custom: {type(module.body).__name__}"
    head_layers = tuple(estimator.head_layer_sizes)
    heads = f"{estimator.n_heads_}, " + (
        f"hidden widths {head_layers}" if head_layers else "one linear layer each"
    )
    per_head = estimator.n_members_ / estimator.n_heads_
    rank = estimator.head_rank_
    rows = [
        ["Input", f"rows of shape {tuple(estimator.input_shape_)}, scaled inside the network"],
        ["Body", body],
        ["Heads", heads],
        ["Members per head", _fmt(per_head)],
        ["Head rank", "full width" if rank is None else f"{rank} (shared projection)"],
        ["Head matching", estimator.head_matching_],
        ["Outputs per head", str(module.heads.layers[-1].weight.shape[-1])],
        ["Parameters", f"{n_parameters:,}"],
        ["Weights", _size(weight_bytes)],
        [
            "Pickled size without the teacher",
            _size_or_na(_pickled_size(estimator.without_teacher())),
        ],
    ]
    if teacher_size is not None:
        rows.append(["Teacher's pickled size / weights", f"{teacher_size / weight_bytes:.1f}x"])
    rows.append(["Device, precision", f"{estimator.device_}, {estimator.precision}"])
    return _table(rows)


def _training_table(estimator):
    history = estimator.net_.history
    phase2 = estimator.max_epochs - estimator.phase1_epochs
    if estimator.early_stopping:
        # Students saved before n_iter_no_change_ existed had an int patience.
        patience = getattr(estimator, "n_iter_no_change_", estimator.n_iter_no_change)
        stopping = (
            f"on {_fmt(estimator.validation_fraction)} of the transfer set, patience "
            f"{patience} epochs"
        )
    else:
        stopping = "off"
    rows = [
        [
            "Phase 1: body and one head against the ensemble's mean",
            f"{estimator.phase1_epochs} epochs at most",
        ],
        ["Phase 2: every head against its members", f"{phase2} epochs at most"],
        ["Early stopping", stopping],
        ["Epochs run (both phases)", str(len(history))],
        ["Final training loss", _fmt(history[-1, "train_loss"]) if len(history) else "n/a"],
    ]
    if len(history) and "valid_loss" in history[-1]:
        rows.append(["Final validation loss", _fmt(history[-1, "valid_loss"])])
    if hasattr(estimator, "classes_"):
        rows.append(["Temperature", _fmt(estimator.temperature)])
        # Students saved before match_aleatoric existed have no head_scale_.
        scale = getattr(estimator, "head_scale_", None)
        if scale is not None:
            rows.append(["Factor on the heads' logits (match_aleatoric)", _fmt(scale)])
        spread = getattr(estimator, "head_spread_", None)
        if spread is not None:
            rows.append(["Factor on the heads' spread (match_epistemic)", _fmt(spread)])
    if estimator.augmentation is None or estimator.augmentation_factor == 0:
        rows.append(["Augmentation", "none"])
    else:
        rows.append(
            [
                "Augmentation",
                f"{estimator.augmentation} (augmentation_factor "
                f"{_fmt(estimator.augmentation_factor)}, "
                f"noise_scale {_fmt(estimator.noise_scale)})",
            ]
        )
    rows.append(
        [
            "Optimiser",
            f"AdamW, lr {_fmt(estimator.lr)}, weight decay {_fmt(estimator.weight_decay)}, "
            f"batch size {estimator.net_.batch_size}",
        ]
    )
    rows.append(["random_state", str(estimator.random_state)])
    return _table(rows)


def _spearman(teacher, student):
    if np.ptp(teacher) == 0 or np.ptp(student) == 0:
        return "n/a (constant)"
    return _fmt(uncertainty_spearman(teacher, student))


def _ratio(numerator, denominator):
    return numerator / denominator if denominator > 0 else np.nan


def _fidelity_table(student, teacher, classifier):
    if classifier:
        rows = [
            [
                "Agreement",
                _fmt(agreement(teacher.point, student.point)),
                "fraction of rows where both predict the same class",
            ],
            [
                "KL divergence to the teacher",
                _fmt(kl_to_teacher(teacher.point, student.point)),
                "mean KL(teacher, student) of the mean predictions, nats",
            ],
        ]
    else:
        rmse = root_mean_squared_error(teacher.point, student.point)
        rows = [["RMSE to the teacher's mean", _fmt(rmse), "units of y"]]
    units = "nats" if classifier else "squared units of y"
    s_mean, t_mean = np.mean(student.epistemic), np.mean(teacher.epistemic)
    rows += [
        [
            "Spearman of epistemic uncertainty",
            _spearman(teacher.epistemic, student.epistemic),
            "rank correlation, row by row",
        ],
        ["Mean epistemic, student", _fmt(s_mean), units],
        ["Mean epistemic, teacher", _fmt(t_mean), units],
        [
            "Mean epistemic, student / teacher",
            _fmt(_ratio(s_mean, t_mean)),
            "1 is the teacher's level",
        ],
    ]
    return _table(rows, ("Metric", "Value", "Meaning"))


def _ood_table(student, teacher):
    def column(model):
        if model is None:
            return [_NO_TEACHER] * 3
        return [
            _fmt(ood_auroc(model.epistemic, model.epistemic_ood)),
            _fmt(np.mean(model.epistemic)),
            _fmt(np.mean(model.epistemic_ood)),
        ]

    return {
        "Metric": [
            "AUROC of epistemic uncertainty",
            "Mean epistemic, evaluation rows",
            "Mean epistemic, out-of-distribution rows",
        ],
        "Student": column(student),
        "Teacher": column(teacher),
    }


def _calibration_table(estimator, student, teacher, y, level, n_bins):
    if hasattr(estimator, "classes_"):
        classes = estimator.classes_

        def column(model):
            if model is None:
                return [_NO_TEACHER] * 4
            proba = model.point
            return [
                _fmt(accuracy_score(y, classes[np.argmax(proba, axis=1)])),
                _fmt(negative_log_likelihood(y, proba, classes=classes)),
                _fmt(brier_score(y, proba, classes=classes)),
                _fmt(expected_calibration_error(y, proba, classes=classes, n_bins=n_bins)),
            ]

        names = [
            "Accuracy",
            "Negative log-likelihood (nats)",
            "Brier score",
            f"ECE ({n_bins} bins)",
        ]
    else:

        def column(model):
            if model is None:
                return [_NO_TEACHER] * 4
            rmse = _fmt(root_mean_squared_error(y, model.point))
            if model.variances is None:
                unknown = "n/a (no variance)"
                return [rmse, unknown, unknown, unknown]
            mixture = (model.means, model.variances, model.weights)
            return [
                rmse,
                _fmt(gaussian_mixture_nll(y, *mixture)),
                _fmt(crps_gaussian_mixture(y, *mixture)),
                _fmt(interval_coverage(y, *mixture, level=level)),
            ]

        names = [
            "RMSE",
            "Gaussian mixture NLL",
            "CRPS",
            f"Coverage of the {100 * level:g}% interval",
        ]
    return {"Metric": names, "Student": column(student), "Teacher": column(teacher)}
