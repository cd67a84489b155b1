"""Pure torch distillation losses, one value per row, reduced with sample weights.

Each loss receives the student's raw head outputs ``y_pred`` of shape
(N, H, K) and a dict ``y_true`` of teacher targets aligned head by head, and
returns the sample-weighted mean over rows of the per-row loss averaged over
heads.
"""

import torch
from torch import nn
from torch.nn import functional as F

from .nn import gaussian_parameters

__all__ = ["GaussianDistillationLoss", "TemperedKLLoss", "gaussian_kl", "tempered_log_softmax"]


def _weighted_mean(per_row, weight):
    return (per_row * weight).sum() / weight.sum().clamp_min(1e-12)


def tempered_log_softmax(scores, temperature):
    """``log softmax(scores / T)`` along the last axis.

    The one tempering of Hydra classification: of the members' log-probabilities
    (the head targets) and of the student's logits (in the loss).

    Parameters
    ----------
    scores : torch.Tensor of shape (..., n_classes)
        Logits or log-probabilities.
    temperature : float
        Distillation temperature ``T``.

    Returns
    -------
    torch.Tensor of shape (..., n_classes)
        For input of two or more dimensions, a view whose class axis is not
        the contiguous one (see Notes).

    Notes
    -----
    On the CPU, torch's softmax along a short last axis (a few classes) is
    about 4x slower, forward and backward, than along an axis whose
    neighbours are contiguous, so the classes are swapped with the axis
    before them (the heads) and swapped back as a view.

    Examples
    --------
    >>> import torch
    >>> from skhydra.losses import tempered_log_softmax
    >>> tempered_log_softmax(torch.tensor([0.8, 0.2]).log(), 2.0).exp()  # softmax(log p / 2)
    tensor([0.6667, 0.3333])
    """
    scores = scores / temperature
    if scores.dim() < 2:
        return F.log_softmax(scores, dim=-1)
    return F.log_softmax(scores.transpose(-1, -2), dim=-2).transpose(-1, -2)


class TemperedKLLoss(nn.Module):
    """Per-head tempered KL divergence of Hydra classification.

    ``L = T^2 / H * sum_h KL(p_h^T || softmax(z_h / T))`` where ``p_h^T`` is
    the tempered teacher distribution of head ``h`` (computed once per fit).

    Parameters
    ----------
    temperature : float, default=1.0
        Distillation temperature ``T``.

    Notes
    -----
    ``y_true["target"]`` holds tempered teacher probabilities of shape
    (N, H, C) and ``y_true["weight"]`` row weights of shape (N,). The
    targets' own term ``sum p log p`` (which makes the loss a divergence,
    0 when student and teacher agree, without changing its gradient) is read
    from ``y_true["neg_entropy"]`` (N,), its mean over heads, when the
    targets carry it (computed once per fit), and computed otherwise.

    Examples
    --------
    >>> import torch
    >>> from skhydra.losses import TemperedKLLoss
    >>> target = torch.tensor([[[0.7, 0.3]]])
    >>> y_true = {"target": target, "weight": torch.ones(1)}
    >>> round(TemperedKLLoss(1.0)(target.log(), y_true).item(), 6)  # student = teacher
    0.0
    """

    def __init__(self, temperature=1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, y_pred, y_true):
        target = y_true["target"]
        log_q = tempered_log_softmax(y_pred, self.temperature)
        cross = -(target * log_q).sum(dim=-1).mean(dim=1)
        neg_entropy = y_true.get("neg_entropy")
        if neg_entropy is None:
            neg_entropy = torch.xlogy(target, target).sum(dim=-1).mean(dim=1)
        per_row = (neg_entropy + cross) * self.temperature**2
        return _weighted_mean(per_row, y_true["weight"])


def gaussian_kl(mean_p, var_p, mean_q, var_q):
    """``KL(N(mean_p, var_p) || N(mean_q, var_q))`` elementwise.

    Examples
    --------
    >>> import torch
    >>> from skhydra.losses import gaussian_kl
    >>> gaussian_kl(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(1.0), torch.tensor(1.0))
    tensor(0.5000)
    """
    return 0.5 * (
        torch.log(var_q) - torch.log(var_p) + (var_p + (mean_p - mean_q) ** 2) / var_q - 1.0
    )


class GaussianDistillationLoss(nn.Module):
    """Per-head Gaussian distillation loss of Hydra regression.

    With Gaussian members (``y_true["var"]`` finite), head ``h`` minimises
    ``KL(N(mu_h, s_h^2) || N(mu'_h, s'^2_h))``. With point members
    (``y_true["var"]`` NaN), the head mean matches the member mean by squared
    error and, on rows with an observed target ``y_true["y"]``, the head
    variance is fitted by the Gaussian negative log-likelihood of ``y`` around
    the member mean. All quantities are in standardised target units.

    Parameters
    ----------
    min_variance : float
        Variance floor of the heads (see :func:`skhydra.nn.gaussian_parameters`).

    Examples
    --------
    >>> import torch
    >>> from skhydra.losses import GaussianDistillationLoss
    >>> y_pred = torch.tensor([[[0.0, 0.5413]]])  # mean 0, softplus(0.5413) = variance 1
    >>> y_true = {"mean": torch.tensor([[0.0]]), "var": torch.tensor([[1.0]]),
    ...           "y": torch.tensor([float("nan")]), "weight": torch.ones(1)}
    >>> round(GaussianDistillationLoss(0.0)(y_pred, y_true).item(), 4)
    0.0
    """

    def __init__(self, min_variance=1e-4):
        super().__init__()
        self.min_variance = min_variance

    def forward(self, y_pred, y_true):
        mean_s, var_s = gaussian_parameters(y_pred, self.min_variance)
        mean_t, var_t = y_true["mean"], y_true["var"]
        has_var = torch.isfinite(var_t)
        safe_var_t = torch.where(has_var, var_t, torch.ones_like(var_t))
        kl = gaussian_kl(mean_t, safe_var_t, mean_s, var_s)
        squared = 0.5 * (mean_s - mean_t) ** 2
        y = y_true["y"].unsqueeze(1)
        has_y = torch.isfinite(y)
        residual = torch.where(has_y, y - mean_t, torch.zeros_like(mean_t))
        nll = 0.5 * (torch.log(var_s) + residual**2 / var_s)
        point = squared + torch.where(has_y, nll, torch.zeros_like(nll))
        per_row = torch.where(has_var, kl, point).mean(dim=1)
        return _weighted_mean(per_row, y_true["weight"])
