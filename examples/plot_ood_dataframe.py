"""
============================================================
A pandas workflow: flag unusual rows by epistemic uncertainty
============================================================

skhydra estimators take pandas DataFrames like any scikit-learn estimator:
they record ``feature_names_in_``, and
:func:`skhydra.predict_uncertainty` returns a DataFrame that keeps the
index of its input, so uncertain rows can be traced back to the records they
came from.

This example distils an extra-trees classifier fitted on the wine data, then
mixes held-out wines with corrupted copies whose measurements were multiplied
by 3 (say, a unit error upstream), and lists the rows with the highest
epistemic uncertainty.
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
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
teacher = ExtraTreesClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)

# %%
# Distil on the DataFrame
# -----------------------
# The student takes the DataFrame directly and scales its inputs itself.
hydra = HydraDistilledClassifier(
    teacher, body_layer_sizes=(64,), phase1_epochs=20, max_epochs=40, random_state=0
).fit(X_train)
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
u_student = predict_uncertainty(hydra, X_mixed)
u_teacher = predict_uncertainty(teacher, X_mixed)

k = 10
top = u_student.nlargest(k, "epistemic")
print(f"\nstudent: the {k} rows with the highest epistemic uncertainty")
print(top.round(4))
for name, u in [("student", u_student), ("teacher", u_teacher)]:
    top_names = u["epistemic"].nlargest(k).index
    n_shifted = int(top_names.str.startswith("shifted").sum())
    auroc = ood_auroc(u["epistemic"][~is_shifted], u["epistemic"][is_shifted])
    print(f"{name}: {n_shifted} of the top {k} are shifted rows; OOD AUROC {auroc:.3f}")

# %%
# The student's and the teacher's epistemic uncertainty of every mixed row,
# with the shifted rows in orange.
fig, ax = plt.subplots(figsize=(5.5, 5))
for mask, label, color in [(~is_shifted, "test rows", "C0"), (is_shifted, "shifted x3", "C1")]:
    ax.scatter(
        u_teacher["epistemic"][mask],
        u_student["epistemic"][mask],
        s=14,
        alpha=0.7,
        color=color,
        label=label,
    )
ax.set_xlabel("teacher (extra trees) epistemic uncertainty (nats)")
ax.set_ylabel("student epistemic uncertainty (nats)")
ax.set_title("Held-out and corrupted wines")
ax.legend()
fig.tight_layout()
plt.show()
