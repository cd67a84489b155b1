"""The KD baseline, tuned like Hydra: its own temperature and schedule, on validation rows.

KD is the student with one head (``n_heads=1``): it learns the ensemble's mean
prediction. Its settings are chosen per split on a validation split of the
training rows (never on the test rows), from a small grid: the temperature
(classification only) and the schedule (``phase1_epochs`` + the epochs of
phase 2). The criterion is the validation NLL of its predictions against the
true labels, since KD's job is the mean prediction.
"""

#: Temperatures tried for a classifier's KD (1 = the plain softmax targets).
TEMPERATURES = (1.0, 2.0, 4.0)

#: Schedules tried: name -> (phase1_epochs, max_epochs).
SCHEDULES = {"100+300": (100, 400), "30+100": (30, 130)}


def grid(classifier, schedules=None, temperatures=None):
    """name -> estimator parameters of every KD candidate (``n_heads=1`` included)."""
    schedules = SCHEDULES if schedules is None else schedules
    temperatures = (
        (TEMPERATURES if temperatures is None else temperatures) if classifier else [None]
    )
    candidates = {}
    for t in temperatures:
        for sched, (phase1, total) in schedules.items():
            name = (f"T={t:g}, " if t is not None else "") + f"{sched} epochs"
            params = dict(n_heads=1, phase1_epochs=phase1, max_epochs=total)
            if t is not None:
                params["temperature"] = t
            candidates[name] = params
    return candidates


def select(candidates, score):
    """(best name, name -> validation score) with ``score(params)`` lower is better."""
    scores = {name: float(score(params)) for name, params in candidates.items()}
    best = min(scores, key=lambda name: (scores[name], list(scores).index(name)))
    return best, scores


def tuning_table(choices, digits=3):
    """Markdown: each candidate's validation score (mean ± s.e.) and how often it was chosen.

    ``choices`` is a list, one item per split, of (chosen name, name -> score).
    """
    from _stats import cell

    names = list(choices[0][1])
    lines = [
        "| KD candidate | validation NLL | chosen on splits |",
        "|---|---|---|",
    ]
    for name in names:
        chosen = [str(i) for i, (best, _) in enumerate(choices) if best == name]
        values = [scores[name] for _, scores in choices]
        lines.append(f"| {name} | {cell(values, digits)} | {', '.join(chosen) or '–'} |")
    return "\n".join(lines)
