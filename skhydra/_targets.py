"""From the teacher's predictions to the heads' training targets.

Which member each head learns (:func:`assign_heads`): member ``m`` itself
(head ``m`` imitates member ``m``, as in the Hydra paper), or, with *rank*
matching, the member of rank ``m`` in each row (head ``m`` imitates the
``m``-th smallest member prediction, the members' order statistics). Ranking
is a per-row permutation of exchangeable members, so the ensemble's mean and
its uncertainty decomposition are unchanged; it gives the heads smooth targets
when single members are not smooth functions of the input (a tree's vote
jumps from row to row, its rank statistics do not). And the loop that turns
the teacher's prediction chunks into the targets of both phases, row block by
row block, into a memory-bounded store (:func:`collect_targets`). How one
chunk becomes targets is the task's: the estimators pass a *target encoding*
(classification or Gaussian) with a method
``encode(predictions, heads, y) -> (phase1, phase2)``, each a dict of arrays
with one row per transfer row.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["HeadAssignment", "assign_heads", "collect_targets"]


@dataclass(frozen=True, eq=False)
class HeadAssignment:
    """How the ensemble's members map onto the student's heads.

    Attributes
    ----------
    member_heads : ndarray of shape (n_members,)
        The head of each member.
    member_weights : ndarray of shape (n_members,)
        The members' weights in the ensemble, summing to one.
    mixing : ndarray of shape (n_heads, n_members)
        Row ``h``: the weights of head ``h``'s members within its target,
        summing to one.
    head_weights : ndarray of shape (n_heads,)
        Each head's weight in the student's mixture: its members' summed
        weights.
    rank : bool
        Whether members are matched by rank (``member_heads`` then maps ranks,
        not members, to heads).
    """

    member_heads: np.ndarray
    member_weights: np.ndarray
    mixing: np.ndarray
    head_weights: np.ndarray
    rank: bool = False

    @property
    def one_member_per_head(self):
        """Whether head ``m`` learns member ``m`` alone (no mixing needed)."""
        return len(self.head_weights) == len(self.member_heads)

    def ranked(self, key, *values):
        """``values`` (n, n_members, ...) with members sorted per row by ``key`` (n, n_members).

        Unchanged without rank matching. Ties keep the members' order.
        """
        if not self.rank:
            return values if len(values) > 1 else values[0]
        order = np.argsort(key, axis=1, kind="stable")
        ranked = tuple(
            np.take_along_axis(v, order.reshape(order.shape + (1,) * (v.ndim - 2)), axis=1)
            for v in values
        )
        return ranked if len(ranked) > 1 else ranked[0]

    def head_targets(self, members):
        """Mix per-member values (n, n_members, ...) into per-head ones (n, n_heads, ...).

        A head's value is NaN where one of its members' values is (a member
        without a variance), whatever the other heads' members give.
        """
        if self.one_member_per_head:
            return members
        return _mix("nm...,hm->nh...", members, self.mixing)

    def mean_target(self, members):
        """The ensemble's weighted mean (n, 1, ...) of per-member values (n, n_members, ...)."""
        return _mix("nm...,m->n...", members, self.member_weights)[:, None]


def _mix(subscripts, members, weights):
    unknown = np.isnan(members)
    if not unknown.any():
        return np.einsum(subscripts, members, weights)
    mixed = np.einsum(subscripts, np.where(unknown, 0.0, members), weights)
    mixed[np.einsum(subscripts, unknown.astype(float), weights) > 0] = np.nan
    return mixed


def assign_heads(n_members, n_heads, member_weights=None, rank=False):
    """Map the members (or their ranks) onto the heads.

    Member ``m`` goes to head ``m % n_heads``: with one head per member, head
    ``m`` learns member ``m``. With ``rank=True``, the member of rank ``r`` in
    each row goes to head ``r * n_heads // n_members``: consecutive ranks share
    a head, so a head mixes members that predict alike and keeps the spread
    between heads.

    Parameters
    ----------
    n_members, n_heads : int
        ``1 <= n_heads <= n_members``.
    member_weights : ndarray of shape (n_members,), default=None
        Normalised member weights (voting ensembles); None for equal weights.
    rank : bool, default=False
        Match by rank; needs equal member weights.

    Returns
    -------
    HeadAssignment

    Examples
    --------
    >>> from skhydra._targets import assign_heads
    >>> heads = assign_heads(5, 2)
    >>> heads.member_heads.tolist(), heads.head_weights.round(6).tolist()
    ([0, 1, 0, 1, 0], [0.6, 0.4])
    >>> assign_heads(5, 2, rank=True).member_heads.tolist()
    [0, 0, 0, 1, 1]
    """
    w = np.full(n_members, 1.0 / n_members) if member_weights is None else member_weights
    if rank and not np.allclose(w, w[0]):
        raise ValueError(
            "Rank matching needs equally weighted members (ranking permutes the members of "
            "each row); use head_matching='member' for a weighted ensemble."
        )
    if rank:
        member_heads = np.arange(n_members) * n_heads // n_members
    else:
        member_heads = np.arange(n_members) % n_heads
    assignment = np.zeros((n_heads, n_members))
    assignment[member_heads, np.arange(n_members)] = w
    head_weights = assignment.sum(axis=1)
    mixing = assignment / head_weights[:, None]
    return HeadAssignment(member_heads, w, mixing, head_weights, rank=rank)


def collect_targets(chunks, encoding, heads, y, n_rows, store):
    """The targets of both phases for every transfer row, chunk by chunk.

    Parameters
    ----------
    chunks : iterable of (int, int, predictions)
        The teacher's predictions ``(start, stop, predictions)`` over all
        transfer rows in order (see :meth:`skhydra.ensembles.Teacher.iter_predictions`).
    encoding : object
        The task's target encoding, with ``encode(predictions, heads, y)``.
    heads : HeadAssignment
    y : ndarray of shape (n_rows,) or None
        Observed targets (NaN on synthetic rows), passed to ``encode``.
    n_rows : int
        Number of transfer rows.
    store : skhydra._storage.RowStore
        Where the target arrays are allocated.

    Returns
    -------
    phase1, phase2 : dict of array-like
        Per-row targets of the single head and of all heads.
    """
    targets = None
    for start, stop, predictions in chunks:
        parts = encoding.encode(predictions, heads, None if y is None else y[start:stop])
        if targets is None:
            targets = tuple(
                {k: store.empty((n_rows, *v.shape[1:]), v.dtype) for k, v in part.items()}
                for part in parts
            )
        for stored, part in zip(targets, parts, strict=True):
            for key, value in part.items():
                stored[key][start:stop] = value
    return targets
