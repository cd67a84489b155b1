"""
======================================================
Distil a list of torch networks and detect OOD inputs
======================================================

A deep ensemble (the same network trained from several random seeds) is a
strong way to get epistemic uncertainty, but it costs one forward pass per
member. Here five small torch MLPs are trained on the digits 0-7 only, then
distilled into one :class:`skhydra.HydraDistilledClassifier` with one head per
network. The digits 8 and 9 play the part of out-of-distribution (OOD)
inputs: a good uncertainty estimate is higher on them than on held-out
digits 0-7.

Plain knowledge distillation (one head, ``n_heads=1``) is trained alongside
for comparison: a single head has no members to disagree, so its epistemic
uncertainty is zero everywhere and cannot flag anything.
"""

# %%
# Data: in-domain digits 0-7, OOD digits 8-9
# ------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra.metrics import ood_auroc

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)  # pixel intensities in [0, 1]
in_domain = y < 8
X_ood = X[~in_domain]
X_train, X_test, y_train, y_test = train_test_split(
    X[in_domain], y[in_domain], test_size=0.3, random_state=0
)

# %%
# The teacher: five MLPs from five seeds
# --------------------------------------
# Each member is a plain :class:`torch.nn.Module` that returns logits. skhydra
# needs nothing else: a list of modules is a supported ensemble.


def train_member(seed, n_steps=150):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train)
    for _ in range(n_steps):  # full-batch training, a few seconds in all
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(Xt), yt).backward()
        optimizer.step()
    return net.eval()


members = [train_member(seed) for seed in range(5)]
with torch.no_grad():
    teacher_proba = np.mean(
        [torch.softmax(m(torch.from_numpy(X_test)), dim=1).numpy() for m in members], axis=0
    )
print(f"teacher accuracy (0-7): {np.mean(teacher_proba.argmax(axis=1) == y_test):.3f}")

# %%
# Distil: Hydra (one head per member) and KD (one head)
# -----------------------------------------------------
# The modules do not carry their classes, so the student's classes are
# ``0, ..., 7`` (the logit columns). The transfer set is the training rows;
# the student adds noisy copies that the members label.
student_params = dict(body_layer_sizes=(64,), phase1_epochs=20, max_epochs=60, random_state=0)
hydra = HydraDistilledClassifier(members, **student_params).fit(X_train)
kd = HydraDistilledClassifier(members, n_heads=1, **student_params).fit(X_train)
print(f"hydra accuracy (0-7):   {hydra.score(X_test, y_test):.3f}")
print(f"KD accuracy (0-7):      {kd.score(X_test, y_test):.3f}")

# %%
# Epistemic uncertainty in-domain and out of distribution
# -------------------------------------------------------
# :func:`skhydra.predict_uncertainty` decomposes the list of modules and the
# students with the same code; a bare list of modules cannot tell whether it
# classifies or regresses, so it is given ``task="classifier"``. The OOD AUROC
# is the probability that a random OOD row gets a higher epistemic uncertainty
# than a random in-domain row.
models = {"teacher (5 MLPs)": members, "Hydra": hydra, "KD (1 head)": kd}
scores = {}
for name, model in models.items():
    task = "classifier" if model is members else None
    u_in = predict_uncertainty(model, X_test, task=task)["epistemic"].to_numpy()
    u_out = predict_uncertainty(model, X_ood, task=task)["epistemic"].to_numpy()
    scores[name] = (u_in, u_out)
    print(
        f"{name:17s} epistemic in {u_in.mean():.4f}  OOD {u_out.mean():.4f}  "
        f"OOD AUROC {ood_auroc(u_in, u_out):.3f}"
    )

# %%
# Most in-domain rows have an epistemic uncertainty close to zero, so the
# histograms use a logarithmic axis (values below ``1e-6`` nats are drawn at
# ``1e-6``). The teacher's and Hydra's histograms shift to the right on the
# unseen digits; KD's epistemic uncertainty is identically zero, so its AUROC
# is 0.5 (chance).
floor = 1e-6
bins = np.logspace(np.log10(floor), 0, 40)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), sharex=True)
for ax, (name, (u_in, u_out)) in zip(axes, scores.items(), strict=True):
    ax.hist(np.maximum(u_in, floor), bins=bins, alpha=0.6, label="digits 0-7 (test)")
    ax.hist(np.maximum(u_out, floor), bins=bins, alpha=0.6, label="digits 8-9 (OOD)")
    ax.set_xscale("log")
    ax.set_title(f"{name}: OOD AUROC {ood_auroc(u_in, u_out):.2f}")
    ax.set_xlabel("epistemic uncertainty (nats)")
axes[0].set_ylabel("rows")
axes[0].legend(loc="upper left")
fig.tight_layout()
plt.show()
