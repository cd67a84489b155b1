"""
=====================================================
Distil an ensemble of CNNs into a CNN with five heads
=====================================================

Images need a convolutional student. :class:`skhydra.HydraDistilledClassifier`
takes any :class:`torch.nn.Module` class as its shared ``body``: it builds the
body from ``body_params``, finds the width of its output with one forward pass
and puts the light heads (one per ensemble member) on top. ``X`` can then keep
its image shape ``(n_samples, channels, height, width)``.

Here the digits of scikit-learn are 8x8 images. A teacher of five small CNNs
is trained on the digits 0-7 and distilled into one CNN with five linear heads.
The student should keep the teacher's epistemic uncertainty: low on held-out
digits 0-7, high where the members disagree, such as on the digits 8 and 9
that they never saw, and as low as the teacher's where they agree, even on
images that are out of distribution (rotated digits).
"""

# %%
# Digits as images
# ----------------
# ``load_digits`` gives rows of 64 grey levels (0-16); reshaped, they are
# single-channel 8x8 images. Digits 0-7 are in-domain; the digits 8-9 and the
# held-out digits rotated by 90 degrees are two out-of-distribution (OOD) sets.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from torch import nn

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra.metrics import epistemic_fidelity_score, ood_auroc, uncertainty_spearman

torch.set_num_threads(1)  # networks this small train fastest on one CPU thread
X, y = load_digits(return_X_y=True)
X = X.reshape(-1, 1, 8, 8).astype(np.float32)
in_domain = y < 8
X_train, X_test, y_train, y_test = train_test_split(
    X[in_domain], y[in_domain], test_size=0.3, random_state=0, stratify=y[in_domain]
)
ood_sets = {
    "digits 8-9": X[~in_domain],
    "rotated 90°": np.ascontiguousarray(np.rot90(X_test, k=1, axes=(2, 3))),
}


# %%
# The teacher: five CNNs from five seeds
# --------------------------------------
# Each member is a plain torch module that takes the raw images and returns
# logits for the 8 classes; it scales the grey levels itself. A list of such
# modules is a supported ensemble.
def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 8),
    )


class Member(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = small_cnn()

    def forward(self, x):
        return self.net(x / 16.0)


def train_member(seed, n_epochs=10):
    torch.manual_seed(seed)
    net = Member()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train)
    for _ in range(n_epochs):
        for batch in torch.randperm(len(Xt)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(Xt[batch]), yt[batch]).backward()
            optimizer.step()
    return net.eval()


members = [train_member(seed) for seed in range(5)]
with torch.no_grad():
    teacher_proba = np.mean(
        [torch.softmax(m(torch.from_numpy(X_test)), dim=1).numpy() for m in members], axis=0
    )
print(f"teacher accuracy (0-7): {np.mean(teacher_proba.argmax(axis=1) == y_test):.3f}")


# %%
# The student's body: a small CNN class
# -------------------------------------
# The body maps the (standardised) image batch to features; here two
# convolutions and a linear layer to ``hidden`` features. Its constructor
# arguments go in ``body_params``. Each head is one linear layer on those
# features (``head_layer_sizes=()``), ``hidden * 8 + 8`` parameters, so the
# five heads cost little more than the single head of plain distillation.
class CNNBody(nn.Module):
    def __init__(self, channels=8, hidden=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * channels * 16, hidden),
            nn.ReLU(),
        )

    def forward(self, x):
        return self.net(x)


# With image-shaped X, the student standardises each channel (``input_scaling="auto"``)
# and adds noisy copies of the images, labelled by the members, to the transfer set.
hydra = HydraDistilledClassifier(
    members,
    body=CNNBody,
    body_params={"channels": 8, "hidden": 32},
    phase1_epochs=15,
    max_epochs=45,
    noise_scale=1.0,
    random_state=0,
).fit(X_train)
print(f"Hydra accuracy (0-7):   {hydra.score(X_test, y_test):.3f}")

n_teacher = sum(p.numel() for m in members for p in m.parameters())
n_hydra = sum(p.numel() for p in hydra.net_.module_.parameters())
print(f"parameters: teacher {n_teacher}, Hydra {n_hydra} ({hydra.n_heads_} heads)")

# %%
# Uncertainty in-domain and out of distribution
# ---------------------------------------------
# :func:`skhydra.predict_uncertainty` decomposes the list of modules (told it
# classifies) and the student with the same code. The OOD AUROC is the chance
# that an OOD image gets more epistemic uncertainty than an in-domain one.
rows = {"digits 0-7 (test)": X_test, **ood_sets}
epistemic = {
    model_name: {
        name: predict_uncertainty(model, images, task=task)["epistemic"].to_numpy()
        for name, images in rows.items()
    }
    for model_name, model, task in (("teacher", members, "classifier"), ("Hydra", hydra, None))
}
for model_name, u in epistemic.items():
    aurocs = ", ".join(
        f"{name} {ood_auroc(u['digits 0-7 (test)'], u[name]):.3f}" for name in ood_sets
    )
    print(f"{model_name:8s} OOD AUROC: {aurocs}")
teacher_all = np.concatenate(list(epistemic["teacher"].values()))
hydra_all = np.concatenate(list(epistemic["Hydra"].values()))
print(f"Spearman(teacher, Hydra) epistemic: {uncertainty_spearman(teacher_all, hydra_all):.3f}")

# %%
# The teacher separates the unseen digits 8-9 well; rotated digits are harder
# (the CNNs often agree on one confident class for them), and the student
# inherits that too: it copies the teacher's uncertainty, blind spots included.
# The axes are logarithmic; values below ``1e-6`` nats are drawn at ``1e-6``.
floor = 1e-6
bins = np.logspace(np.log10(floor), 0, 35)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for name, color in zip(rows, ("C0", "C1", "C2"), strict=True):
    axes[0].scatter(
        np.maximum(epistemic["teacher"][name], floor),
        np.maximum(epistemic["Hydra"][name], floor),
        s=6,
        alpha=0.5,
        color=color,
        label=name,
    )
    for ax, model_name in zip(axes[1:], epistemic, strict=True):
        ax.hist(
            np.maximum(epistemic[model_name][name], floor),
            bins=bins,
            histtype="step",
            lw=1.5,
            color=color,
            label=name,
        )
axes[0].plot([floor, 1], [floor, 1], "k--", lw=1)
axes[0].set(xscale="log", yscale="log", xlabel="teacher", ylabel="Hydra")
axes[0].set_title("epistemic uncertainty (nats) per image")
axes[0].legend(markerscale=2, fontsize=8)
for ax, model_name in zip(axes[1:], epistemic, strict=True):
    ax.set(xscale="log", xlabel="epistemic uncertainty (nats)", title=model_name)
axes[1].set_ylabel("images")
fig.tight_layout()

# %%
# Tune the body with GridSearchCV
# -------------------------------
# Every entry of ``body_params`` is also an estimator parameter
# ``body__<name>``, so a search can tune the CNN. The scorer
# :func:`skhydra.metrics.epistemic_fidelity_score` rewards students whose
# epistemic uncertainty ranks the validation images like the teacher's. The
# fitted members are shared by every clone, never refit. Short training keeps
# this demonstration fast.
search = GridSearchCV(
    HydraDistilledClassifier(
        members, body=CNNBody, phase1_epochs=3, max_epochs=9, noise_scale=1.0, random_state=0
    ),
    {"body__channels": [4, 8]},
    scoring=epistemic_fidelity_score,
    cv=2,
).fit(X_train)
for channels, score in zip(
    search.cv_results_["param_body__channels"], search.cv_results_["mean_test_score"], strict=True
):
    print(f"channels={channels}: validation fidelity {score:.3f}")
print(f"best: {search.best_params_}")
plt.show()
