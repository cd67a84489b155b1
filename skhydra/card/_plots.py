"""The card's plots, drawn with skhydra.plotting's displays on figures without pyplot."""

#: File names of the plots written to ``plot_dir``.
PLOT_FILES = {
    "comparison": "epistemic_student_vs_teacher.png",
    "reliability": "reliability.png",
    "ood": "ood_uncertainty.png",
}


def _figure(n_axes=1):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "The plots of model_card need matplotlib: pip install matplotlib"
        ) from exc
    # A Figure without pyplot: no global figure registry, no backend to choose.
    figure = Figure(figsize=(5.5 * n_axes, 4.5), layout="constrained")
    return figure, figure.subplots(1, n_axes, squeeze=False)[0]


def _draw_plots(folder, estimator, student, teacher, y, n_bins):
    """Write the PNGs into ``folder``; return ``{section: (file name, description)}``."""
    from ..plotting import ReliabilityDisplay, UncertaintyComparisonDisplay, UncertaintyShiftDisplay

    folder.mkdir(parents=True, exist_ok=True)
    plots = {}

    def save(figure, key, section, description):
        figure.savefig(folder / PLOT_FILES[key], dpi=100)
        plots[section] = (PLOT_FILES[key], description)

    if teacher is not None:
        figure, (ax,) = _figure()
        UncertaintyComparisonDisplay.from_predictions(
            teacher.epistemic, student.epistemic, name="Student", ax=ax
        )
        save(
            figure,
            "comparison",
            "Epistemic uncertainty, student against teacher",
            "One point per evaluation row.",
        )
    if y is not None and hasattr(estimator, "classes_"):
        figure, (ax,) = _figure()
        models = {"Student": student, "Teacher": teacher}
        for name, model in models.items():
            if model is not None:
                ReliabilityDisplay.from_predictions(
                    y, model.point, classes=estimator.classes_, n_bins=n_bins, name=name, ax=ax
                )
        save(figure, "reliability", "Reliability diagram", "Accuracy against top-class confidence.")
    if student.epistemic_ood is not None:
        models = {"Student": student, "Teacher": teacher}
        models = {name: model for name, model in models.items() if model is not None}
        figure, axes = _figure(len(models))
        for ax, (name, model) in zip(axes, models.items(), strict=True):
            UncertaintyShiftDisplay.from_predictions(
                model.epistemic, model.epistemic_ood, name=name, ax=ax
            )
        save(
            figure,
            "ood",
            "Out-of-distribution rows",
            "Epistemic uncertainty of evaluation and out-of-distribution rows.",
        )
    return plots
