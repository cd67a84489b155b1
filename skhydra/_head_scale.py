"""One factor on every head's logits, so the heads are as sure as the members they imitate.

A fully grown tree votes with certainty, so a forest's aleatoric part (the
members' mean entropy) is zero and its whole uncertainty is the members'
disagreement. Smooth heads imitating such votes hedge near the class
boundaries: they report part of the disagreement as their own entropy. After
training, one factor ``s`` on every head's logits (``softmax(s * z)``, a
temperature of ``1 / s``) is chosen so that the heads' mean entropy on held-out
transfer rows equals that of their targets, which moves the hedged part back
into the epistemic part. The factor is folded into the heads' last layer, so
every prediction path (ONNX, saved students) carries it.
"""

import numpy as np
import torch

from .uncertainty import entropy_decomposition

__all__ = [
    "HEAD_SCALE_BOUNDS",
    "HEAD_SCALE_LOGITS",
    "HEAD_SCALE_ROWS",
    "fit_head_scale",
    "held_out_rows",
    "mean_head_entropy",
    "row_limit",
]

#: Smallest and largest factor (a softer or sharper student is left at the bound). Certain
#: members (fully grown trees) ask for an unbounded factor; a larger one sharpens the mean of
#: the heads too: on digits, a forest student's KL divergence from the forest's mean was 0.19
#: unscaled, 0.4 at 2 and 1.0 at 10, where another forest fitted with another seed is at 0.37
#: (benchmarks/results/digits_ood_bound10.md; /tmp probes of the factors in between).
HEAD_SCALE_BOUNDS = (0.5, 2.0)

#: Held-out rows the factor is chosen on (evenly spaced among them when there are more).
HEAD_SCALE_ROWS = 5_000

#: At most this many logits (rows x heads x classes) in the search, fewer rows for many
#: heads and classes: 200 heads of 100 classes use 200 rows, not 5,000 (about 30 MB per
#: float64 copy instead of 800 MB).
HEAD_SCALE_LOGITS = 4_000_000

_BISECTIONS = 40


def mean_head_entropy(log_p, head_weights):
    """``mean over rows of sum_h w_h H[p_h]`` for log-probabilities (n, heads, classes).

    Examples
    --------
    >>> import torch
    >>> from skhydra._head_scale import mean_head_entropy
    >>> log_p = torch.log(torch.tensor([[[0.5, 0.5], [1.0, 1e-30]]]))
    >>> round(mean_head_entropy(log_p, torch.tensor([0.5, 0.5])), 4)  # (log 2 + 0) / 2
    0.3466
    """
    p = log_p.exp().transpose(1, 2)  # heads on the last axis, as entropy_decomposition takes
    return float(entropy_decomposition(p, head_weights.to(p.dtype))[1].mean())


def fit_head_scale(logits, target_entropy, head_weights, bounds=HEAD_SCALE_BOUNDS):
    """The factor ``s`` of the logits whose heads' mean entropy is ``target_entropy``.

    The mean entropy of ``softmax(s * z)`` falls as ``s`` grows, so ``s`` is
    found by bisection on ``log s`` within ``bounds``; a target beyond what the
    bounds reach gives the bound.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_rows, n_heads, n_classes)
        The heads' logits on held-out rows.
    target_entropy : float
        The mean entropy (weighted over heads) of the heads' targets on those
        rows, in nats.
    head_weights : torch.Tensor of shape (n_heads,)
        Weights of the heads, summing to one.
    bounds : (float, float), default=HEAD_SCALE_BOUNDS

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> from skhydra._head_scale import fit_head_scale, mean_head_entropy
    >>> logits = torch.tensor([[[1.0, -1.0]], [[-0.5, 0.5]]])
    >>> weights = torch.ones(1)
    >>> target = mean_head_entropy(torch.log_softmax(3.0 * logits, dim=-1), weights)
    >>> round(fit_head_scale(logits, target, weights, bounds=(0.1, 10.0)), 3)
    3.0
    >>> fit_head_scale(logits, 0.0, weights)  # certain members: the upper bound
    2.0
    """
    logits = logits.double()
    weights = head_weights.double()

    def entropy(log_scale):
        return mean_head_entropy(torch.log_softmax(np.exp(log_scale) * logits, dim=-1), weights)

    low, high = np.log(bounds[0]), np.log(bounds[1])
    if entropy(high) >= target_entropy:
        return float(bounds[1])
    if entropy(low) <= target_entropy:
        return float(bounds[0])
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        if entropy(middle) > target_entropy:
            low = middle
        else:
            high = middle
    return float(np.exp(0.5 * (low + high)))


def row_limit(n_heads, n_classes):
    """How many held-out rows the search takes for ``n_heads`` heads of ``n_classes``.

    Examples
    --------
    >>> from skhydra._head_scale import row_limit
    >>> row_limit(100, 2), row_limit(200, 100)
    (5000, 200)
    """
    return int(np.clip(HEAD_SCALE_LOGITS // (n_heads * n_classes), 1, HEAD_SCALE_ROWS))


def held_out_rows(valid_index, weight, n_rows, limit=HEAD_SCALE_ROWS):
    """Rows to choose the factor on: validation rows whose phase-2 weight is positive.

    Without a validation split, every row of positive weight; at most
    ``limit``, evenly spaced (no random draw, so the fit's random stream is
    untouched).

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._head_scale import held_out_rows
    >>> held_out_rows(None, np.array([1.0, 0.0, 1.0, 1.0]), 4).tolist()
    [0, 2, 3]
    >>> held_out_rows(np.array([True, True, False, True]), np.ones(4), 4, limit=2).tolist()
    [0, 3]
    """
    eligible = np.ones(n_rows, dtype=bool) if valid_index is None else valid_index.copy()
    eligible &= np.asarray(weight[:n_rows]) > 0
    rows = np.flatnonzero(eligible)
    if len(rows) > limit:
        rows = rows[np.linspace(0, len(rows) - 1, limit).round().astype(np.int64)]
    return rows
