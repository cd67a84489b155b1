"""
=========================================================
Conformal intervals that follow the student's uncertainty
=========================================================

A distilled student predicts a mean and a standard deviation, but nothing
guarantees that ``mean ± 1.645 std`` covers 90 % of new targets: the
ensemble, and the student's copy of it, may be over- or under-confident.
Split conformal prediction adds that guarantee: calibrate on held-out rows,
and the intervals contain the true target of a new row with probability at
least the confidence level, whatever the model.

:class:`skhydra.conformal.ConformalRegressor` scores each calibration row
by its residual **normalised by the student's std**, ``|y - mean| / std``,
so the calibrated intervals ``mean ± q * std`` stay narrow where the
ensemble is sure and widen where it is not. This example compares them with
the plain absolute-residual intervals ``mean ± q`` on data whose noise grows
with ``x``, and shows the same computation with MAPIE.
"""

# %%
# Data: noise that grows with ``x``
# ---------------------------------
# Three disjoint parts from the same distribution: the teacher and the
# student learn on the training part, the conformal wrappers calibrate on
# the second part, and the third part measures coverage.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import RandomForestRegressor

from skhydra import HydraDistilledRegressor
from skhydra.conformal import ConformalRegressor

rng = np.random.default_rng(0)


def sample(n):
    x = rng.uniform(0, 4, n)
    y = np.sin(x) + (0.05 + 0.4 * x) * rng.standard_normal(n)
    return x.reshape(-1, 1), y


X_train, y_train = sample(500)
X_calib, y_calib = sample(500)
X_test, y_test = sample(2000)

# %%
# Teacher and student
# -------------------
# A random forest is the teacher. Its trees give no variance of their own,
# so the student is fitted with ``y``: its heads learn the members' means and
# the noise variance from the residuals, and ``predict(X, return_std=True)``
# returns the total std of the distilled ensemble.
forest = RandomForestRegressor(n_estimators=20, min_samples_leaf=10, random_state=0)
forest.fit(X_train, y_train)
student = HydraDistilledRegressor(
    forest, body_layer_sizes=(32,), phase1_epochs=10, max_epochs=40, random_state=0
).fit(X_train, y_train)

# %%
# Calibrate
# ---------
# Both wrappers use the fitted student as it is (it is never refit); only the
# calibration rows decide the quantile ``q``.
level = 0.9
normalized = ConformalRegressor(student, confidence_level=level).fit(X_calib, y_calib)
absolute = ConformalRegressor(student, confidence_level=level, score="absolute")
absolute.fit(X_calib, y_calib)


def coverage_and_width(interval, y):
    inside = (interval[:, 0] <= y) & (y <= interval[:, 1])
    return inside.mean(), np.mean(interval[:, 1] - interval[:, 0])


# The student's own Gaussian interval, for comparison: no guarantee.
mean, std = student.predict(X_test, return_std=True)
gaussian = np.column_stack([mean - 1.645 * std, mean + 1.645 * std])
for name, interval in [
    ("student's mean ± 1.645 std", gaussian),
    ("conformal, normalized", normalized.predict_interval(X_test)),
    ("conformal, absolute", absolute.predict_interval(X_test)),
]:
    coverage, width = coverage_and_width(interval, y_test)
    print(f"{name:28s} coverage {coverage:.3f}, mean width {width:.2f}")

# %%
# Both conformal intervals cover about 90 % of the test rows, but the
# normalised ones are narrower on average: they spend their width where the
# noise is. The absolute intervals have one width everywhere, so they cover
# almost every row where the noise is small and too few where it is large.
# Coverage by bins of ``x`` shows this (conditional coverage, which split
# conformal does not guarantee but a good normalising std approaches).
grid = np.linspace(0, 4, 200).reshape(-1, 1)
bins = np.linspace(0, 4, 9)
which = np.digitize(X_test[:, 0], bins[1:-1])

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
ax1.scatter(X_test[:400, 0], y_test[:400], s=5, c="k", alpha=0.3, label="test rows")
for name, conformal, color in [
    ("normalized", normalized, "C0"),
    ("absolute", absolute, "C1"),
]:
    interval = conformal.predict_interval(grid)
    ax1.fill_between(grid[:, 0], interval[:, 0], interval[:, 1], color=color, alpha=0.25)
    ax1.plot(grid[:, 0], interval, color=color, lw=1)
    ax1.plot([], [], color=color, lw=6, alpha=0.4, label=f"{name} 90 % interval")
    test_interval = conformal.predict_interval(X_test)
    inside = (test_interval[:, 0] <= y_test) & (y_test <= test_interval[:, 1])
    per_bin = [inside[which == b].mean() for b in range(len(bins) - 1)]
    ax2.plot(0.5 * (bins[1:] + bins[:-1]), per_bin, "o-", color=color, label=name)
ax1.plot(grid[:, 0], student.predict(grid), "k--", lw=1, label="student mean")
ax1.set_xlabel("x")
ax1.set_ylabel("y")
ax1.set_title("split-conformal intervals")
ax1.legend(loc="upper left", fontsize="small")
ax2.axhline(level, color="grey", ls=":", label="confidence level")
ax2.set_ylim(0.6, 1.02)
ax2.set_xlabel("x (bins)")
ax2.set_ylabel("coverage of the test rows")
ax2.set_title("coverage along x")
ax2.legend(loc="lower left", fontsize="small")
fig.tight_layout()
plt.show()

# %%
# The same with MAPIE
# -------------------
# The student follows scikit-learn's ``predict(X, return_std=True)``
# convention, so MAPIE's split-conformal regressor takes it as a prefit
# estimator, and MAPIE's :class:`~mapie.conformity_scores.StdConformityScore`
# is the normalised score above. The intervals agree: the upper bounds are
# identical, and MAPIE 1.6 puts the lower bound one rank lower in the sorted
# calibration scores (the 50th of 500 largest rather than the 51st), a
# negligible difference.
try:
    from mapie.conformity_scores import StdConformityScore
    from mapie.regression import SplitConformalRegressor
except ImportError:
    print("MAPIE is not installed: pip install mapie")
else:
    mapie = SplitConformalRegressor(
        student, confidence_level=level, conformity_score=StdConformityScore(), prefit=True
    ).conformalize(X_calib, y_calib)
    _, mapie_interval = mapie.predict_interval(X_test)
    ours = normalized.predict_interval(X_test)
    for name, interval in [("skhydra", ours), ("MAPIE", mapie_interval[:, :, 0])]:
        coverage, width = coverage_and_width(interval, y_test)
        print(f"{name:8s} coverage {coverage:.3f}, mean width {width:.3f}")
    print(
        "largest difference of the bounds: "
        f"{np.abs(ours - mapie_interval[:, :, 0]).max(axis=0).round(4)} (lower, upper)"
    )
