"""
=============================================================
A pandas workflow: flag unusual rows by epistemic uncertainty
=============================================================

skhydra estimators take pandas DataFrames like any scikit-learn estimator:
they record ``feature_names_in_``, and :func:`skhydra.predict_uncertainty`
returns a DataFrame that keeps the index of its input, so uncertain rows can
be traced back to the records they came from.

This example distils an extra-trees classifier fitted on the wine data, then
mixes held-out wines with corrupted copies whose measurements were multiplied
by 3 (say, a unit error upstream), and lists the rows with the highest
epistemic uncertainty. It also shows a limit of distillation: the student
learns the teacher's disagreement only where its transfer set goes, and what
to do about it.
"""

# %%
# Data and teacher, as DataFrames
# -------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.model_selection import train_test_split

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra.metrics import ood_auroc

wine = load_wine(as_frame=True)
X, y = wine.data, wine.target
X.index = [f"wine-{i}" for i in X.index]  # readable row labels
y.index = X.index
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
teacher = ExtraTreesClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)

# %%
# Distil on the DataFrame
# -----------------------
# The student takes the DataFrame directly and scales its inputs itself.
student_params = dict(body_layer_sizes=(64,), phase1_epochs=20, max_epochs=60, random_state=0)
hydra = HydraDistilledClassifier(teacher, **student_params).fit(X_train)
print(f"teacher accuracy: {teacher.score(X_test, y_test):.3f}")
print(f"student accuracy: {hydra.score(X_test, y_test):.3f}")
print(f"student features: {len(hydra.feature_names_in_)}, e.g. {list(hydra.feature_names_in_[:3])}")

# %%
# Corrupted rows
# --------------
# Every measurement of a copy of the test rows is multiplied by 3. The copies
# get their own index labels, so they can be recognised after mixing.
X_shifted = X_test * 3.0
X_shifted.index = [name.replace("wine", "shifted") for name in X_test.index]
X_mixed = pd.concat([X_test, X_shifted])
is_shifted = X_mixed.index.str.startswith("shifted")

# %%
# Rank the rows by epistemic uncertainty
# --------------------------------------
# ``predict_uncertainty`` keeps ``X_mixed``'s index, so the most uncertain
# rows are listed by name. The same call decomposes the teacher.
k = 10
uncertainty = {
    "teacher (extra trees)": predict_uncertainty(teacher, X_mixed),
    "student": predict_uncertainty(hydra, X_mixed),
}
print(f"\nstudent: the {k} rows with the highest epistemic uncertainty")
print(uncertainty["student"].nlargest(k, "epistemic").round(4))


def report(name, u):
    top = u["epistemic"].nlargest(k).index
    n_shifted = int(top.str.startswith("shifted").sum())
    auroc = ood_auroc(u["epistemic"][~is_shifted], u["epistemic"][is_shifted])
    print(f"{name}: {n_shifted} of the top {k} are shifted rows; OOD AUROC {auroc:.3f}")


for name, u in uncertainty.items():
    report(name, u)

# %%
# The trees disagree on the corrupted rows (their random thresholds split the
# new range in different ways), so the teacher flags them. The student does
# not: the corrupted rows lie far outside the rows it was distilled on (the
# training rows and noisy copies of them), and there its heads extrapolate
# alike. A student only knows the teacher's disagreement where its transfer
# set goes.
#
# Widen the transfer set
# ----------------------
# The teacher is fitted, so the transfer set needs no labels: any unlabelled
# rows can be added, and the teacher labels them. Here copies of the training
# rows rescaled by random factors between 1/4 and 4 stand for "inputs from a
# wider range than the training data". The test rows and the factor 3 are not
# among them.
rng = np.random.default_rng(0)
factors = np.exp(rng.uniform(np.log(0.25), np.log(4.0), size=(len(X_train), 1)))
X_wide = X_train * factors
X_wide.index = [f"{name}-rescaled" for name in X_train.index]
hydra_wide = HydraDistilledClassifier(teacher, **student_params).fit(pd.concat([X_train, X_wide]))
uncertainty["student, wide transfer set"] = predict_uncertainty(hydra_wide, X_mixed)
print(f"\nwide-transfer student accuracy: {hydra_wide.score(X_test, y_test):.3f}")
report("student, wide transfer set", uncertainty["student, wide transfer set"])

# %%
# Each panel ranks the mixed rows by epistemic uncertainty (values below
# ``1e-6`` nats drawn at ``1e-6``); the dashed line marks the top ``k``.
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
for ax, (name, u) in zip(axes, uncertainty.items(), strict=True):
    order = np.argsort(-u["epistemic"].to_numpy())
    ranked = np.maximum(u["epistemic"].to_numpy()[order], 1e-6)
    rank = np.arange(1, len(ranked) + 1)
    shifted = is_shifted[order]
    ax.scatter(rank[~shifted], ranked[~shifted], s=10, color="C0", label="test rows")
    ax.scatter(rank[shifted], ranked[shifted], s=10, color="C1", label="shifted x3")
    ax.axvline(k + 0.5, color="k", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("rank by epistemic uncertainty")
    ax.set_title(name)
axes[0].set_ylabel("epistemic uncertainty (nats)")
axes[0].legend(loc="lower left")
fig.tight_layout()
plt.show()
