"""Means, standard errors and the comparisons a report may state."""

import time

import numpy as np


def finite(values):
    """The finite numbers among ``values`` (None and NaN dropped), as floats."""
    return np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)


def mean_se(values):
    """(mean, standard error of the mean) of the finite ``values``; (nan, nan) if none."""
    values = finite(values)
    if len(values) == 0:
        return float("nan"), float("nan")
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


def cell(values, digits=3):
    """``mean ± s.e.`` of the finite ``values``, ``–`` when there are none."""
    values = finite(values)
    if len(values) == 0:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    mean, se = mean_se(values)
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def compare(a, b, lower_is_better):
    """How ``a`` compares with ``b`` (lists of per-split values).

    "better" or "worse" only when the difference of the means exceeds the
    combined standard error ``sqrt(se_a**2 + se_b**2)``, which needs two
    splits or more of each; "within" when it does not; "untested" with fewer
    splits; "undefined" when a mean is not finite. Returns (verdict,
    difference of the means, combined standard error).
    """
    (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
    diff, se = ma - mb, float(np.hypot(sa, sb))
    if not np.isfinite(diff):
        return "undefined", diff, se
    if min(len(finite(a)), len(finite(b))) < 2:
        return "untested", diff, se
    if abs(diff) <= se:
        return "within", diff, se
    return ("better" if (diff < 0) == lower_is_better else "worse"), diff, se


def sentence(metric, name_a, a, name_b, b, lower_is_better, digits=3):
    """One generated sentence comparing ``a`` with ``b`` on ``metric``."""
    verdict, diff, se = compare(a, b, lower_is_better)
    pair = f"{name_a} {cell(a, digits)} vs {name_b} {cell(b, digits)}"
    if verdict in ("better", "worse"):
        return (
            f"{metric}: {name_a} is {verdict} ({pair}; the difference {diff:+.{digits}f} "
            f"exceeds the combined standard error {se:.{digits}f})"
        )
    if verdict == "within":
        return (
            f"{metric}: no difference beyond the standard error ({pair}; difference "
            f"{diff:+.{digits}f}, combined standard error {se:.{digits}f})"
        )
    if verdict == "untested":
        return f"{metric}: {pair} (one split: no standard error, nothing concluded)"
    return f"{metric}: {pair} (not comparable)"


def median_times(jobs, repeats):
    """Median seconds of each job, the jobs interleaved per repeat."""
    times = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}
