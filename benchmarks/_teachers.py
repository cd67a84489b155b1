"""Teachers shared by the benchmarks.

``fit_gaussian_mlp_ensemble`` trains the heteroscedastic Gaussian MLP ensemble
of the UCI regression literature (Lakshminarayanan et al. 2017; Hydra, Tran et
al. 2020; Park et al. 2025): each member has two hidden layers of 100 ReLU units
and outputs a mean and a variance, and is trained on the Gaussian negative
log-likelihood with Adam on standardised inputs and targets.

The members are trained together as one batched network (``torch.bmm`` over a
leading member axis). Adam and weight decay act element-wise and the loss is a
sum of per-member losses, so this is exactly ``n_members`` independent trainings,
each with its own initialisation seed and its own minibatch order, only faster.
Each member is then exported as a standalone :class:`GaussianMLP` module that
maps RAW float32 features to ``(n, 2)``: the mean in original y units and the
variance in y units squared, the scalers folded in as buffers, so that the list
can be handed directly to ``skhydra.HydraDistilledRegressor``.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VAR_FLOOR = 1e-6


class GaussianMLP(nn.Module):
    """Heteroscedastic Gaussian MLP on raw features.

    ``forward(x)`` returns a ``(n, 2)`` tensor: column 0 the predictive mean in
    original y units, column 1 the predictive variance in original y units
    squared (``softplus(raw) + 1e-6`` in standardised units, rescaled).
    """

    def __init__(
        self, n_features, hidden=(100, 100), x_mean=None, x_scale=None, y_mean=0.0, y_scale=1.0
    ):
        super().__init__()
        sizes = (n_features, *hidden)
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 2))
        self.net = nn.Sequential(*layers)
        x_mean = torch.zeros(n_features) if x_mean is None else torch.as_tensor(x_mean)
        x_scale = torch.ones(n_features) if x_scale is None else torch.as_tensor(x_scale)
        self.register_buffer("x_mean", x_mean.float().clone())
        self.register_buffer("x_scale", x_scale.float().clone())
        self.register_buffer("y_mean", torch.tensor(float(y_mean)))
        self.register_buffer("y_scale", torch.tensor(float(y_scale)))

    def forward(self, x):
        out = self.net((x - self.x_mean) / self.x_scale)
        mean = out[:, 0] * self.y_scale + self.y_mean
        var = (F.softplus(out[:, 1]) + VAR_FLOOR) * self.y_scale**2
        return torch.stack([mean, var], dim=1)


class _BatchedMLP(nn.Module):
    """``n_members`` MLPs evaluated at once on inputs of shape (members, batch, features)."""

    def __init__(self, members):
        super().__init__()
        linears = [[m for m in member.net if isinstance(m, nn.Linear)] for member in members]
        n_layers = len(linears[0])
        # weights stored as (members, in, out) for baddbmm, biases as (members, 1, out)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[k].weight.detach().T for ls in linears]).contiguous())
            for k in range(n_layers)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[k].bias.detach()[None] for ls in linears]).contiguous())
            for k in range(n_layers)
        )

    def forward(self, x):
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if k < len(self.weights) - 1:
                x = torch.relu(x)
        return x

    def export(self, members):
        with torch.no_grad():
            for j, member in enumerate(members):
                linears = [m for m in member.net if isinstance(m, nn.Linear)]
                for lin, w, b in zip(linears, self.weights, self.biases, strict=True):
                    lin.weight.copy_(w[j].T)
                    lin.bias.copy_(b[j, 0])
        return members


def fit_gaussian_mlp_ensemble(
    X,
    y,
    n_members=5,
    seed=0,
    *,
    hidden=(100, 100),
    max_epochs=150,
    batch_size=32,
    lr=1e-3,
    weight_decay=1e-4,
    mse_warmup=0.0,
    validation_fraction=0.1,
    patience=None,
    verbose=False,
):
    """Fit ``n_members`` heteroscedastic Gaussian MLPs on ``(X, y)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Raw training features; standardised inside (scaler fitted on ``X``).
    y : array-like of shape (n_samples,)
        Targets; standardised inside.
    n_members : int
        Ensemble size; member ``j`` is initialised from seed ``(seed, j)`` and
        shuffles its minibatches with its own generator.
    seed : int
        Base seed.
    hidden : tuple of int
        Hidden layer widths (ReLU).
    max_epochs, batch_size, lr, weight_decay
        Adam settings (``weight_decay`` as L2, per member). A cosine decay of the
        learning rate to 0 runs over the epochs.
    mse_warmup : float
        Fraction of the epochs during which the mean is fitted by squared error
        only (the variance head trained on NLL with the mean detached), a
        common guard against the NLL ignoring hard points early on.

    validation_fraction : float
        If > 0, every member holds out its own random ``validation_fraction`` of
        the rows, trains on the rest, and keeps the weights of the epoch with
        the lowest NLL on its held-out rows (early stopping per member; the
        different held-out rows also decorrelate the members a little).
    patience : int or None
        With validation, stop once no member has improved for this many epochs.
    verbose : bool
        Print the training loss every 50 epochs.

    Returns
    -------
    list of GaussianMLP
        Modules in eval mode mapping raw float32 features to ``(n, 2)``: mean and
        variance in original y units.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    n, d = X.shape
    x_mean, x_scale = X.mean(0), X.std(0)
    x_scale[x_scale == 0] = 1.0
    y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
    Xs = torch.as_tensor((X - x_mean) / x_scale, dtype=torch.float32)
    ys = torch.as_tensor((y - y_mean) / y_scale, dtype=torch.float32)

    seeds = np.random.SeedSequence([seed, 7919]).spawn(n_members)
    members = []
    for ss in seeds:
        torch.manual_seed(int(ss.generate_state(1)[0]))
        members.append(GaussianMLP(d, hidden, x_mean, x_scale, y_mean, y_scale))
    gens = [torch.Generator().manual_seed(int(ss.generate_state(2)[1])) for ss in seeds]

    rng = np.random.default_rng(np.random.SeedSequence([seed, 104729]))
    n_val = int(round(validation_fraction * n)) if validation_fraction > 0 else 0
    orders = np.stack([rng.permutation(n) for _ in range(n_members)])
    fit_rows = torch.as_tensor(orders[:, n_val:])  # (M, n_fit): each member's own rows
    val_rows = torch.as_tensor(orders[:, :n_val])  # (M, n_val)
    n_fit = n - n_val

    model = _BatchedMLP(members)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n_batches = int(np.ceil(n_fit / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs * n_batches)
    warm_epochs = int(round(mse_warmup * max_epochs))
    best_nll = torch.full((n_members,), np.inf)
    best = [p.detach().clone() for p in model.parameters()]
    since_best = 0
    for epoch in range(max_epochs):
        perm = torch.stack([torch.randperm(n_fit, generator=g) for g in gens])
        perm = torch.gather(fit_rows, 1, perm)  # (M, n_fit) shuffled rows of each member
        total = 0.0
        for b in range(n_batches):
            idx = perm[:, b * batch_size : (b + 1) * batch_size]
            out = model(Xs[idx])  # (M, B, 2)
            target = ys[idx]
            mu, var = out[..., 0], F.softplus(out[..., 1]) + VAR_FLOOR
            if epoch < warm_epochs:
                nll = 0.5 * (torch.log(var) + (target - mu.detach()) ** 2 / var)
                loss_m = ((target - mu) ** 2).mean(1) + nll.mean(1)
            else:
                loss_m = (0.5 * (torch.log(var) + (target - mu) ** 2 / var)).mean(1)
            loss = loss_m.sum()  # independent members: sum of per-member mean losses
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.shape[1]
        if n_val and epoch >= warm_epochs:
            with torch.no_grad():
                out = model(Xs[val_rows])
                var = F.softplus(out[..., 1]) + VAR_FLOOR
                val_nll = (0.5 * (torch.log(var) + (ys[val_rows] - out[..., 0]) ** 2 / var)).mean(1)
                better = val_nll < best_nll
                best_nll = torch.where(better, val_nll, best_nll)
                for keep, p in zip(best, model.parameters(), strict=True):
                    keep[better] = p.detach()[better]
            since_best = 0 if bool(better.any()) else since_best + 1
            if patience is not None and since_best >= patience:
                break
        if verbose and (epoch % 50 == 0 or epoch == max_epochs - 1):
            msg = f"  epoch {epoch:4d}  mean member NLL (std units) {total / n_fit / n_members:.4f}"
            if n_val:
                msg += f"  best val NLL {best_nll.mean():.4f}"
            print(msg)
    if n_val:
        with torch.no_grad():
            for keep, p in zip(best, model.parameters(), strict=True):
                p.copy_(keep)
    members = model.export(members)
    for m in members:
        m.eval()
    return members
