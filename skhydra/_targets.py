"""From the teacher's predictions to the heads' training targets.

Which member each head learns (:func:`assign_heads`), and the loop that turns
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
    """

    member_heads: np.ndarray
    member_weights: np.ndarray
    mixing: np.ndarray
    head_weights: np.ndarray

    @property
    def one_member_per_head(self):
        """Whether head ``m`` learns member ``m`` alone (no mixing needed)."""
        return len(self.head_weights) == len(self.member_heads)

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


def assign_heads(n_members, n_heads, member_weights=None):
    """Distil member ``m`` into head ``m % n_heads``.

    Parameters
    ----------
    n_members, n_heads : int
        ``1 <= n_heads <= n_members``.
    member_weights : ndarray of shape (n_members,), default=None
        Normalised member weights (voting ensembles); None for equal weights.

    Returns
    -------
    HeadAssignment

    Examples
    --------
    >>> from skhydra._targets import assign_heads
    >>> heads = assign_heads(5, 2)
    >>> heads.member_heads.tolist(), heads.head_weights.round(6).tolist()
    ([0, 1, 0, 1, 0], [0.6, 0.4])
    """
    w = np.full(n_members, 1.0 / n_members) if member_weights is None else member_weights
    member_heads = np.arange(n_members) % n_heads
    assignment = np.zeros((n_heads, n_members))
    assignment[member_heads, np.arange(n_members)] = w
    head_weights = assignment.sum(axis=1)
    return HeadAssignment(member_heads, w, assignment / head_weights[:, None], head_weights)


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
