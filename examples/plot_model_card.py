"""
=====================================
A model card for a distilled student
=====================================

Before a student replaces its ensemble in production, someone will ask what it
was distilled from, how big it is, and how closely it follows the ensemble,
predictions and uncertainty alike. :func:`skhydra.card.model_card` answers in
one call: it measures the student against its teacher on rows you pass and
writes a Markdown model card (a :class:`skops.card.Card`, the format of the
Hugging Face Hub) with the plots next to it.

This example distils an extra-trees classifier fitted on the wine data,
builds the card on held-out rows with their labels and on out-of-distribution
rows, saves it to a temporary folder and prints its beginning.
"""

# %%
# Teacher and student
# -------------------
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.model_selection import train_test_split

from skhydra import HydraDistilledClassifier
from skhydra.card import PLOT_FILES, model_card

X, y = load_wine(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
teacher = ExtraTreesClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)
hydra = HydraDistilledClassifier(
    teacher, body_layer_sizes=(64,), phase1_epochs=20, max_epochs=60, random_state=0
).fit(X_train)

# %%
# Out-of-distribution rows
# ------------------------
# Each feature of the test rows is shuffled on its own: every value is a
# plausible measurement, but the combinations are wines nobody has seen. The
# card reports how well epistemic uncertainty tells them from the test rows.
rng = np.random.default_rng(0)
X_ood = np.column_stack([rng.permutation(column) for column in X_test.T])

# %%
# Build and save the card
# -----------------------
# The plots are written to ``plot_dir`` and linked by file name, so the card
# is saved into the same folder (the layout of a Hub repository).
folder = Path(tempfile.mkdtemp(prefix="skhydra-card-"))
card = model_card(
    hydra, X_test, y_test, X_ood=X_ood, plot_dir=folder, title="Wine classifier (Hydra student)"
)
card.save(folder / "README.md")
print(sorted(path.name for path in folder.iterdir()))

# %%
# The card's beginning (the hyperparameter table and the rest follow):
lines = (folder / "README.md").read_text(encoding="utf-8").splitlines()
print("\n".join(lines[:60]))

# %%
# The numbers are also in the card object: each table is a dict of columns,
# as printed.
fidelity = card.select("Wine classifier (Hydra student)/Fidelity to the teacher").table
for metric, value in zip(fidelity["Metric"], fidelity["Value"], strict=True):
    print(f"{metric:>36}: {value}")

# %%
# The plots of the card
# ---------------------
fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
for ax, name in zip(axes, ["comparison", "reliability", "ood"], strict=True):
    ax.imshow(plt.imread(folder / PLOT_FILES[name]))
    ax.set_title(PLOT_FILES[name])
    ax.set_axis_off()
fig.tight_layout()
plt.show()

shutil.rmtree(folder)
