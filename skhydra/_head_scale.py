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

A second factor ``r`` on the heads' deviations from their mean logit
(``z_bar + r * (z_h - z_bar)``) is chosen with it so that the heads' mean
disagreement on the same rows (the student's epistemic part) equals their
targets'. Heads that cannot fit every member's particular deviations shrink
towards their mean: on digits a forest's student reported 0.77 of the
forest's epistemic uncertainty on its own held-out transfer rows (a /tmp
probe) and 0.81 on test and out-of-distribution rows
(benchmarks/results/digits_ood.md at e226ce2, ``hydra-unspread``).
"""

import numpy as np
import torch

from .uncertainty import entropy_decomposition

__all__ = [
    "HEAD_SCALE_BOUNDS",
    "HEAD_SPREAD_BOUNDS",
    "HEAD_SCALE_LOGITS",
    "HEAD_SCALE_ROWS",
    "fit_head_factors",
    "fit_head_scale",
    "held_out_rows",
    "mean_head_entropy",
    "mean_head_epistemic",
    "mean_head_uncertainty",
    "row_limit",
    "spread_logits",
]

#: Smallest and largest factor (a softer or sharper student is left at the bound). Certain
#: members (fully grown trees) ask for an unbounded factor; a larger one sharpens the mean of
#: the heads too: on digits, a forest student's KL divergence from the forest's mean was 0.19
#: unscaled, 0.4 at 2 and 1.0 at 10, where another forest fitted with another seed is at 0.37
#: (benchmarks/results/digits_ood_bound10.md; /tmp probes of the factors in between).
HEAD_SCALE_BOUNDS = (0.5, 2.0)

#: Held-out rows the factors are chosen on (evenly spaced among them when there are more):
#: the search evaluates the heads' entropy about 125 times, about 2 s on 1,000 rows of 100
#: heads and 8 classes (2 cores).
HEAD_SCALE_ROWS = 1_000

#: At most this many logits (rows x heads x classes) in the search, fewer rows for many
#: heads and classes: 200 heads of 100 classes use 50 rows, not 1,000 (8 MB per float64
#: copy instead of 160 MB).
HEAD_SCALE_LOGITS = 1_000_000

#: Smallest and largest factor on the heads' deviations from their mean logit.
HEAD_SPREAD_BOUNDS = (0.5, 2.0)

#: Rounds of the alternating search of the two factors (each moves the other's target a
#: little: a sharper head disagrees more in probabilities).
_ROUNDS = 2

_BISECTIONS = 25


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
    return mean_head_uncertainty(log_p, head_weights)[0]


def mean_head_uncertainty(log_p, head_weights):
    """The heads' mean entropy and mean disagreement, from one decomposition.

    ``(mean over rows of sum_h w_h H[p_h], mean over rows of H[sum_h w_h p_h] -
    sum_h w_h H[p_h])`` for log-probabilities (n, heads, classes).

    Examples
    --------
    >>> import torch
    >>> from skhydra._head_scale import mean_head_uncertainty
    >>> log_p = torch.log(torch.tensor([[[1.0, 1e-30], [1e-30, 1.0]]]))
    >>> [round(v, 4) for v in mean_head_uncertainty(log_p, torch.tensor([0.5, 0.5]))]
    [0.0, 0.6931]
    """
    p = log_p.exp().transpose(1, 2)  # heads on the last axis, as entropy_decomposition takes
    total, aleatoric = entropy_decomposition(p, head_weights.to(p.dtype))
    return float(aleatoric.mean()), float((total - aleatoric).mean())


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

    return _bisect(entropy, target_entropy, bounds, rising=False)


def row_limit(n_heads, n_classes):
    """How many held-out rows the search takes for ``n_heads`` heads of ``n_classes``.

    Examples
    --------
    >>> from skhydra._head_scale import row_limit
    >>> row_limit(100, 2), row_limit(200, 100)
    (1000, 50)
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


def spread_logits(logits, head_weights, spread):
    """``z_bar + spread * (z_h - z_bar)``: the heads' logits ``spread`` times as far from
    their (weighted) mean.

    Examples
    --------
    >>> import torch
    >>> from skhydra._head_scale import spread_logits
    >>> logits = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])
    >>> spread_logits(logits, torch.tensor([0.5, 0.5]), 2.0).tolist()
    [[[0.0, 0.0], [4.0, 0.0]]]
    """
    mean = (logits * head_weights[:, None]).sum(dim=1, keepdim=True)
    return mean + spread * (logits - mean)


def mean_head_epistemic(log_p, head_weights):
    """Mean over rows of ``H[sum_h w_h p_h] - sum_h w_h H[p_h]`` (the heads' disagreement).

    Examples
    --------
    >>> import torch
    >>> from skhydra._head_scale import mean_head_epistemic
    >>> log_p = torch.log(torch.tensor([[[1.0, 1e-30], [1e-30, 1.0]]]))
    >>> round(mean_head_epistemic(log_p, torch.tensor([0.5, 0.5])), 4)  # log 2
    0.6931
    """
    return mean_head_uncertainty(log_p, head_weights)[1]


def _bisect(measure, target, bounds, rising):
    """The factor within ``bounds`` where ``measure(log factor)`` crosses ``target``."""
    low, high = np.log(bounds[0]), np.log(bounds[1])
    above = (lambda x: x > target) if rising else (lambda x: x < target)
    if not above(measure(high)):
        return float(bounds[1])
    if above(measure(low)):
        return float(bounds[0])
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        if above(measure(middle)):
            high = middle
        else:
            low = middle
    return float(np.exp(0.5 * (low + high)))


def fit_head_factors(logits, target_entropy, target_epistemic, head_weights):
    """Both factors: ``scale`` on the logits and ``spread`` on their deviations from the mean.

    The heads' logits become ``scale * spread_logits(z, w, spread)``; ``scale``
    makes their mean entropy ``target_entropy`` (:func:`fit_head_scale`, within
    :data:`HEAD_SCALE_BOUNDS`), ``spread`` their mean disagreement
    ``target_epistemic`` (within :data:`HEAD_SPREAD_BOUNDS`), each found by
    bisection with the other fixed, in alternating rounds. ``None`` for a
    target leaves its factor at 1.

    Returns
    -------
    (float, float)
        ``scale`` and ``spread``.

    Examples
    --------
    >>> import torch
    >>> from skhydra._head_scale import fit_head_factors, mean_head_epistemic, spread_logits
    >>> logits = torch.randn(500, 4, 3, generator=torch.Generator().manual_seed(0))
    >>> w = torch.full((4,), 0.25)
    >>> target = mean_head_epistemic(torch.log_softmax(spread_logits(logits, w, 1.5), -1), w)
    >>> scale, spread = fit_head_factors(logits, None, target, w)
    >>> scale, round(spread, 3)
    (1.0, 1.5)
    """
    logits = logits.double()
    weights = head_weights.double()
    scale, spread = 1.0, 1.0
    for _ in range(_ROUNDS if target_entropy is not None and target_epistemic is not None else 1):
        if target_entropy is not None:
            scale = fit_head_scale(spread_logits(logits, weights, spread), target_entropy, weights)
        if target_epistemic is not None:

            def epistemic(log_spread, scale=scale):
                spread_z = spread_logits(logits, weights, np.exp(log_spread))
                return mean_head_epistemic(torch.log_softmax(scale * spread_z, dim=-1), weights)

            spread = _bisect(epistemic, target_epistemic, HEAD_SPREAD_BOUNDS, rising=True)
    if target_entropy is not None and target_epistemic is not None:
        scale = fit_head_scale(spread_logits(logits, weights, spread), target_entropy, weights)
    return scale, spread
