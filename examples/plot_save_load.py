"""
=======================================
Save and load a student without pickle
=======================================

A pickle (or joblib) file runs code when it is loaded, so it should only be
loaded from a source you trust. :func:`skhydra.dump` writes a fitted student
to a ``.skhydra`` file that :func:`skhydra.load` reads without unpickling
anything: a JSON description of the estimator, the network's weights read
with ``torch.load(weights_only=True)`` and, for a Pipeline teacher, its
preprocessing through :mod:`skops.io`.

The file leaves the ensemble out, so it is also small. This example distils a
random forest, saves the student, loads it back, checks that it predicts
exactly the same, and compares the file sizes.
"""

# %%
# A student of a random forest
# ----------------------------
import io
import pickle
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import skhydra

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)
hydra = skhydra.HydraDistilledClassifier(
    forest, body_layer_sizes=(32,), phase1_epochs=5, max_epochs=20, random_state=0
).fit(X_train)

# %%
# Save and load
# -------------
# ``dump`` takes a path or a binary file object; ``load`` returns a fitted
# student, like ``hydra.without_teacher()``: its ``ensemble`` is None.
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "student.skhydra"
    skhydra.dump(hydra, path)
    skhydra_size = path.stat().st_size
    loaded = skhydra.load(path)

print(type(loaded).__name__, "with", loaded.n_heads_, "heads; ensemble:", loaded.ensemble)
same = np.array_equal(loaded.predict_proba(X_test), hydra.predict_proba(X_test))
print("identical probabilities:", same)
u_saved = hydra.predict_uncertainty(X_test)
u_loaded = loaded.predict_uncertainty(X_test)
print("identical uncertainty:", u_saved.equals(u_loaded))

# %%
# File sizes
# ----------
# Pickling the fitted student keeps the forest it learned from; the
# ``.skhydra`` file (like a pickle of ``without_teacher()``) keeps only the
# network and what prediction needs.
buffer = io.BytesIO()
skhydra.dump(hydra, buffer)
assert len(buffer.getvalue()) == skhydra_size  # the same bytes as the file
sizes = {
    "pickle of the student\n(with its forest)": len(pickle.dumps(hydra)),
    "pickle of the forest": len(pickle.dumps(forest)),
    "pickle of\nwithout_teacher()": len(pickle.dumps(hydra.without_teacher())),
    ".skhydra file": skhydra_size,
}
for name, size in sizes.items():
    print(f"{name.replace(chr(10), ' '):40s} {size / 1024:8.1f} KiB")

# %%
# The left panel compares the epistemic uncertainty of the saved and the
# loaded student on the test rows (every point on the diagonal: the same
# numbers); the right panel shows the file sizes.
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.scatter(u_saved["epistemic"], u_loaded["epistemic"], s=10, alpha=0.6)
top = u_saved["epistemic"].max()
left.plot([0, top], [0, top], "k--", lw=1)
left.set(
    xlabel="saved student: epistemic (nats)",
    ylabel="loaded student: epistemic (nats)",
    title="Predictions survive the round trip",
)
right.barh(list(sizes), [s / 1024 for s in sizes.values()], color="tab:blue")
right.set(xlabel="size (KiB)", title="What each file holds")
fig.tight_layout()
plt.show()
