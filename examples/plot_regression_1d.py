"""
===================================================
Regression: aleatoric and epistemic variance in 1-D
===================================================

A regression ensemble whose members each predict a Gaussian (a mean and a
variance) separates two kinds of uncertainty:

* **aleatoric** variance, the noise in ``y`` that every member sees (the mean
  of the members' variances), and
* **epistemic** variance, the members' disagreement about the mean (the
  variance of the members' means), large where there were no training data.

This example builds a 1-D toy problem with a gap in the data and noise that
grows with ``|x|``, trains five small torch Gaussian networks on bootstrap
samples, and distils them into :class:`skhydra.HydraDistilledRegressor`. The
student should keep both parts: wide noise bands at the edges of the data,
and an epistemic bump in the gap.
"""

# %%
# Data: a gap in the middle, noise growing with ``|x|``
# -----------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from skhydra import HydraDistilledRegressor, predict_uncertainty
from skhydra.ensembles import predict_members

rng = np.random.default_rng(0)
n = 300
x = rng.uniform(1, 4, n) * rng.choice([-1, 1], n)  # x in [-4, -1] U [1, 4]
noise_std = 0.05 + 0.1 * np.abs(x)
y = np.sin(x) + noise_std * rng.standard_normal(n)
X = x.reshape(-1, 1).astype(np.float32)
grid = np.linspace(-6, 6, 400, dtype=np.float32).reshape(-1, 1)

# %%
# The teacher: five Gaussian networks on bootstrap samples
# --------------------------------------------------------
# Each member is a :class:`torch.nn.Module` whose output has two columns:
# the mean and the **variance** (softplus plus a small floor keeps it
# positive), trained by the Gaussian negative log-likelihood. This is the
# layout skhydra expects from torch regressors.


class GaussianMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh())
        self.out = nn.Linear(50, 2)

    def forward(self, X):
        mean, raw = self.out(self.body(X)).unbind(dim=1)
        return torch.stack([mean, nn.functional.softplus(raw) + 1e-6], dim=1)


def train_member(seed, n_steps=600):
    torch.manual_seed(seed)
    rows = np.random.default_rng(seed).integers(0, n, n)  # a bootstrap sample
    Xt = torch.from_numpy(X[rows])
    yt = torch.from_numpy(y[rows].astype(np.float32))
    net = GaussianMLP()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(n_steps):  # full batch
        optimizer.zero_grad()
        out = net(Xt)
        nn.functional.gaussian_nll_loss(out[:, 0], yt, out[:, 1]).backward()
        optimizer.step()
    return net.eval()


members = [train_member(seed) for seed in range(5)]

# %%
# Distil
# ------
# The members give their own variances, so the student needs no ``y``: head
# ``m`` matches member ``m``'s Gaussian on the training inputs and on noisy
# copies of them, which also fall into the gap and beyond the data. A wiggly
# 1-D curve asks for two body layers and a small hidden layer in each head;
# three synthetic rows per real row fill the gap more densely.
hydra = HydraDistilledRegressor(
    members,
    body_layer_sizes=(64, 64),
    head_layer_sizes=(32,),
    lr=3e-3,
    augmentation_factor=3.0,
    phase1_epochs=20,
    max_epochs=60,
    random_state=0,
).fit(X)

# %%
# Teacher and student on a grid
# -----------------------------
# :func:`skhydra.ensembles.predict_members` gives the members' means and
# variances in the same layout as the student's ``predict_members``;
# :func:`skhydra.predict_uncertainty` decomposes both (a bare list of modules
# needs ``task="regressor"``).
teacher_means, _ = predict_members(members, grid, task="regressor")
teacher_mean = teacher_means.mean(axis=1)
u_teacher = predict_uncertainty(members, grid, task="regressor")
student_mean, student_std = hydra.predict(grid, return_std=True)
u_student = hydra.predict_uncertainty(grid)

in_gap = np.abs(grid[:, 0]) < 1
on_data = (np.abs(grid[:, 0]) >= 1) & (np.abs(grid[:, 0]) <= 4)
for name, u in [("teacher", u_teacher), ("student", u_student)]:
    gap, data = u["epistemic"][in_gap].mean(), u["epistemic"][on_data].mean()
    print(
        f"{name}: mean epistemic variance in the gap {gap:.4f}, on the data {data:.4f} "
        f"(ratio {gap / data:.1f})"
    )
print(
    f"student vs teacher mean on the data: max |difference| "
    f"{np.abs(student_mean - teacher_mean)[on_data].max():.3f}"
)

# %%
# The left panel shows the data and the mean plus or minus two total standard
# deviations; the right panel splits the variance into its two parts. The
# aleatoric variance follows the noise of the data (growing with ``|x|``),
# the epistemic variance rises in the gap and beyond ``|x| = 4``, for the
# teacher and for the student.
xs = grid[:, 0]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
ax1.scatter(x, y, s=6, c="k", alpha=0.4, label="data")
for name, mean, std, color, style in [
    ("teacher", teacher_mean, np.sqrt(u_teacher["total"]), "C0", "-"),
    ("student", student_mean, student_std, "C1", "--"),
]:
    ax1.plot(xs, mean, style, color=color, label=f"{name} mean")
    ax1.fill_between(xs, mean - 2 * std, mean + 2 * std, color=color, alpha=0.2)
ax1.set_ylim(-3, 3)
ax1.set_xlabel("x")
ax1.set_ylabel("y")
ax1.set_title("mean ± 2 total std")
ax1.legend(loc="lower left")

for name, u, style in [("teacher", u_teacher, "-"), ("student", u_student, "--")]:
    ax2.plot(xs, u["aleatoric"], "C2" + style, label=f"{name} aleatoric")
    ax2.plot(xs, u["epistemic"], "C3" + style, label=f"{name} epistemic")
ax2.axvspan(-1, 1, color="grey", alpha=0.15, label="gap in the data")
ax2.set_yscale("log")
ax2.set_xlabel("x")
ax2.set_ylabel("variance")
ax2.set_title("aleatoric vs epistemic variance")
ax2.legend(loc="lower left", fontsize="small")
fig.tight_layout()
plt.show()
