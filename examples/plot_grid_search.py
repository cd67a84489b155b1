"""
======================================================
Tune a Hydra student for uncertainty with GridSearchCV
======================================================

:class:`skhydra.HydraDistilledClassifier` is an ordinary scikit-learn
estimator, so its architecture can be tuned with
:class:`~sklearn.model_selection.GridSearchCV`. Accuracy alone is the wrong
target for a Hydra student, though: plain knowledge distillation (one head)
can be just as accurate and still carries no epistemic uncertainty at all.
:func:`skhydra.metrics.epistemic_fidelity_score` scores what Hydra is for: the
Spearman correlation of the student's epistemic uncertainty with its
teacher's, row by row, on the validation fold.

The teacher here is a small deep ensemble, five scikit-learn MLPs trained
from five seeds on the digits data. The search tunes the student's body and
head widths, refits the candidate with the best fidelity and never touches
the teacher: every clone in the search shares the fitted members.
"""

# %%
# Data and teacher
# ----------------
# A list of fitted classifiers (here Pipelines) is a supported teacher. The
# members differ only by their seed; their disagreement is the ensemble's
# epistemic uncertainty.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhydra import HydraDistilledClassifier
from skhydra.metrics import epistemic_fidelity_score
from skhydra.plotting import UncertaintyComparisonDisplay

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=800, test_size=400, random_state=0, stratify=y
)

members = [
    make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=300, random_state=seed)).fit(
        X_train, y_train
    )
    for seed in range(5)
]
teacher_proba = np.mean([m.predict_proba(X_test) for m in members], axis=0)
teacher_accuracy = np.mean(members[0].classes_[teacher_proba.argmax(axis=1)] == y_test)
print(f"teacher accuracy: {teacher_accuracy:.3f}")

# Snapshot of the members' weights, to check below that the search leaves them alone.
weights_before = [[w.copy() for w in m[-1].coefs_] for m in members]

# %%
# Search the architecture, select by fidelity
# -------------------------------------------
# Two scorers are recorded per candidate; ``refit="fidelity"`` picks the
# candidate whose heads rank the validation rows most like the ensemble does.
# ``y`` is only needed by the accuracy scorer: the fitted members label the
# transfer rows themselves.
search = GridSearchCV(
    HydraDistilledClassifier(members, phase1_epochs=15, max_epochs=45, random_state=0),
    {"body_layer_sizes": [(32,), (128,)], "head_layer_sizes": [(), (16,)]},
    scoring={"fidelity": epistemic_fidelity_score, "accuracy": "accuracy"},
    refit="fidelity",
    cv=3,
).fit(X_train, y_train)

results = pd.DataFrame(
    {
        "body": search.cv_results_["param_body_layer_sizes"],
        "head": search.cv_results_["param_head_layer_sizes"],
        "fidelity": search.cv_results_["mean_test_fidelity"],
        "accuracy": search.cv_results_["mean_test_accuracy"],
        "rank": search.cv_results_["rank_test_fidelity"],
    }
)
print(results.round(3).to_string(index=False))
print(f"best: {search.best_params_}")

# %%
# The teacher is shared, never refit
# ----------------------------------
# Each of the 13 fits (4 candidates x 3 folds, plus the refit) cloned the
# student, and a clone keeps the very same fitted ensemble.
unchanged = all(
    np.array_equal(before, after)
    for m, weights in zip(members, weights_before, strict=True)
    for before, after in zip(weights, m[-1].coefs_, strict=True)
)
print(f"best_estimator_.ensemble_ is members: {search.best_estimator_.ensemble_ is members}")
print(f"members' weights unchanged: {unchanged}")

# %%
# Fidelity against accuracy
# -------------------------
# Each point is one candidate, averaged over the three validation folds. The
# members were trained on all of ``X_train``, so the validation accuracies
# (against the true labels) are optimistic; the held-out ``X_test`` below is
# the honest check. The two scores need not agree on the best candidate: a
# student can match the ensemble's votes without matching its disagreement.
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.scatter(results["accuracy"], results["fidelity"], s=40)
for row in results.itertuples():
    ax.annotate(
        f"body={row.body}, head={row.head}",
        (row.accuracy, row.fidelity),
        textcoords="offset points",
        xytext=(5, 5),
        fontsize=8,
    )
ax.set_xlabel("mean validation accuracy")
ax.set_ylabel("mean validation epistemic fidelity (Spearman)")
ax.set_title("GridSearchCV candidates")
ax.margins(x=0.45, y=0.2)
fig.tight_layout()

# %%
# The best student against its teacher
# ------------------------------------
# :class:`~skhydra.plotting.UncertaintyComparisonDisplay` takes the fitted
# search itself: it finds the refitted student and its ensemble and compares
# their epistemic uncertainty on the held-out rows. The legend's Spearman
# correlation is the fidelity score on these rows; points below the dotted line
# are rows where the student reports less disagreement than the ensemble.
disp = UncertaintyComparisonDisplay.from_estimator(search, X_test, name="best Hydra", alpha=0.6)
disp.ax_.set_title("Epistemic uncertainty on held-out rows")
disp.figure_.tight_layout()

# %%
# Compared with knowledge distillation
# ------------------------------------
# The best architecture with a single head is plain knowledge distillation.
# Its epistemic uncertainty is zero on every row, so its fidelity score is
# 0.0 by definition, whatever its accuracy.
kd = HydraDistilledClassifier(
    members, n_heads=1, phase1_epochs=15, max_epochs=45, random_state=0, **search.best_params_
).fit(X_train)
print(
    f"Hydra: test accuracy {search.best_estimator_.score(X_test, y_test):.3f}, "
    f"test fidelity {epistemic_fidelity_score(search, X_test):.3f}"
)
print(
    f"KD:    test accuracy {kd.score(X_test, y_test):.3f}, "
    f"test fidelity {epistemic_fidelity_score(kd, X_test):.3f}"
)
plt.show()
