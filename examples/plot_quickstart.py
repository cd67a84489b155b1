"""
=============================================
Quickstart: distil a random forest into Hydra
=============================================

A random forest predicts well and its trees disagree where the data are
ambiguous, but it is large and slow to ship. :class:`skhydra.HydraDistilledClassifier`
distils the forest into one small network with one head per tree. The heads'
mean predicts like the forest; the heads' spread keeps the forest's
*epistemic* uncertainty (the mutual information between the prediction and
the member), which ordinary distillation into one head loses.

This example fits a forest on the digits data, distils it, compares the
accuracies and plots the student's epistemic uncertainty against the
forest's on held-out rows.
"""

# %%
# Data and teacher
# ----------------
# The teacher is an ordinary fitted scikit-learn forest.
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra.metrics import agreement, uncertainty_spearman

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)

# %%
# Distil
# ------
# The forest is already fitted, so ``y`` is not needed: the forest labels the
# transfer rows (and the noisy synthetic rows the student adds around them)
# itself. A small body keeps this example fast.
hydra = HydraDistilledClassifier(
    forest,
    body_layer_sizes=(64,),
    phase1_epochs=20,
    max_epochs=60,
    random_state=0,
).fit(X_train)

print(f"forest accuracy: {forest.score(X_test, y_test):.3f}")
print(f"hydra accuracy:  {hydra.score(X_test, y_test):.3f}")
fidelity = agreement(forest.predict_proba(X_test), hydra.predict_proba(X_test))
print(f"agreement with the forest: {fidelity:.3f}")
print(f"heads: {hydra.n_heads_} (one per tree)")

# %%
# Uncertainty of teacher and student
# ----------------------------------
# :func:`skhydra.predict_uncertainty` decomposes both the student and the
# forest itself with the same code, so the two can be compared row by row.
u_student = predict_uncertainty(hydra, X_test)
u_forest = predict_uncertainty(forest, X_test)
print(u_student.head())

rho = uncertainty_spearman(u_forest["epistemic"], u_student["epistemic"])
print(f"Spearman correlation of epistemic uncertainty: {rho:.3f}")
print(
    f"mean epistemic uncertainty: forest {u_forest['epistemic'].mean():.3f}, "
    f"Hydra {u_student['epistemic'].mean():.3f} nats"
)

# %%
# Rows where the trees disagree more tend to be rows where the heads disagree
# more (the rank correlation above), but the small student reports far less
# disagreement than the forest: fully grown trees vote for single classes,
# each by its own idiosyncratic splits, and one linear head per tree on a
# small shared body reproduces those votes only in part. Use the student's
# epistemic uncertainty to rank rows, not as the forest's value. The dashed
# line is equality.
fig, ax = plt.subplots(figsize=(5, 5))
ax.scatter(u_forest["epistemic"], u_student["epistemic"], s=10, alpha=0.6)
upper = max(u_forest["epistemic"].max(), u_student["epistemic"].max())
ax.plot([0, upper], [0, upper], "k--", lw=1)
ax.set_xlabel("forest epistemic uncertainty (nats)")
ax.set_ylabel("Hydra epistemic uncertainty (nats)")
ax.set_title(f"Epistemic uncertainty on test rows (Spearman {rho:.2f})")
fig.tight_layout()
plt.show()
