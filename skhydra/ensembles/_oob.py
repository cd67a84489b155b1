"""Out-of-bag views of a bootstrapped ensemble on its own training rows.

A tree grown on a bootstrap sample memorises the rows it was fitted on: on
such a row it predicts (nearly) that row's label, whatever the other rows say.
On a random forest's training rows about 63% of the trees are in that case,
so the forest agrees with itself there far more than on any new row, and a
student that learns the forest's disagreement on its training rows learns
too little of it. The trees that did *not* see a row (its out-of-bag trees,
about 37% of them) predict it as they predict new rows. :func:`in_bag_mask`
finds which member saw which row; :func:`out_of_bag_view` replaces a row's
members by evenly spaced order statistics of its out-of-bag members, the
view of the ensemble a new row at that place would get. A row with fewer
than two out-of-bag members (every row of extra trees, which use no
bootstrap) has no such view: the student learns the members' spread from the
other rows (:meth:`InBag.has_view`).
"""

from dataclasses import dataclass, replace

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

__all__ = ["InBag", "in_bag_rows", "out_of_bag_view"]

#: Fewest out-of-bag members a row needs for its view to replace its members.
MIN_OUT_OF_BAG = 2


def _final_estimator(ensemble):
    while True:
        if isinstance(ensemble, FrozenEstimator):
            ensemble = ensemble.estimator
        elif isinstance(ensemble, Pipeline):
            ensemble = ensemble[-1]
        else:
            return ensemble


@dataclass(frozen=True, eq=False)
class InBag:
    """Which training rows each member of a tree ensemble was fitted on.

    Attributes
    ----------
    samples : list of ndarray, or None
        Sorted row indices of each member's bootstrap sample; None when
        every member was fitted on every row (no bootstrap: extra trees).
    n_rows : int
        Number of rows the ensemble was fitted on.
    n_members : int
        Number of members.
    n_new : int, default=0
        Rows after the training rows that no member saw (:meth:`with_new_rows`).
    """

    samples: list
    n_rows: int
    n_members: int
    n_new: int = 0

    def with_new_rows(self, n_new):
        """The same training rows followed by ``n_new`` rows no member saw.

        Examples
        --------
        >>> from skhydra.ensembles._oob import InBag
        >>> trees = InBag(None, 3, 2).with_new_rows(2)  # no bootstrap: all saw every row
        >>> trees.mask(0, 5).all(axis=1).tolist(), trees.has_view().tolist()
        ([True, True, True, False, False], [False, False, False, True, True])
        """
        return replace(self, n_new=n_new)

    def mask(self, start, stop):
        """(stop - start, n_members) booleans: whether member m saw row start + i."""
        mask = np.zeros((stop - start, self.n_members), dtype=bool)
        if self.samples is None:
            mask[: max(0, self.n_rows - start)] = True
            return mask
        for m, rows in enumerate(self.samples):
            lo, hi = np.searchsorted(rows, [start, stop])
            mask[rows[lo:hi] - start, m] = True
        return mask

    def has_view(self):
        """(n_rows + n_new,) booleans: whether a row has enough out-of-bag members for a view.

        A new row has every member out of its bag: its view is the members themselves.
        """
        new = np.ones(self.n_new, dtype=bool)
        if self.samples is None:
            return np.r_[np.zeros(self.n_rows, dtype=bool), new]
        seen = np.zeros(self.n_rows, dtype=np.intp)
        for rows in self.samples:
            seen[rows] += 1
        return np.r_[self.n_members - seen >= MIN_OUT_OF_BAG, new]


def in_bag_rows(ensemble, n_members):
    """The members' training rows, or None when the ensemble does not say.

    Parameters
    ----------
    ensemble : object
        A fitted ensemble (a Pipeline or FrozenEstimator around one is
        unwrapped).
    n_members : int
        Number of members of the resolved teacher; the ensemble's members
        must be these.

    Returns
    -------
    InBag or None
        For random forests, extra trees and bagging: their bootstrap samples
        (``samples=None`` when there is no bootstrap and every member saw
        every row). None for other ensembles and lists of models.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    >>> from skhydra.ensembles._oob import in_bag_rows
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    >>> in_bag = in_bag_rows(forest, 3)
    >>> in_bag.n_rows, in_bag.mask(0, 5).shape
    (150, (5, 3))
    >>> trees = in_bag_rows(ExtraTreesClassifier(n_estimators=3).fit(X, y), 3)
    >>> trees.samples is None, bool(trees.mask(0, 5).all())  # no bootstrap: all rows
    (True, True)
    """
    model = _final_estimator(ensemble)
    n_rows = getattr(model, "_n_samples", None)
    estimators = getattr(model, "estimators_", None)
    if n_rows is None or not hasattr(model, "bootstrap") or estimators is None:
        return None
    if len(estimators) != n_members:
        return None
    if not model.bootstrap:
        return InBag(None, int(n_rows), n_members)
    samples = model.estimators_samples_
    return InBag([np.unique(np.asarray(s, dtype=np.intp)) for s in samples], int(n_rows), n_members)


def out_of_bag_view(values, in_bag, key):
    """Each row's members replaced by evenly spaced order statistics of its out-of-bag members.

    Row ``i`` with ``k >= 2`` out-of-bag members gets, as member ``r`` of
    ``M``, the out-of-bag member of rank ``floor((r + 1/2) k / M)`` by
    ``key``: the members sorted by ``key``, as rank matching wants them,
    spread like the out-of-bag members. Rows with fewer out-of-bag members
    keep their members.

    Parameters
    ----------
    values : ndarray of shape (n, n_members, ...)
        The members' predictions of ``n`` training rows.
    in_bag : ndarray of shape (n, n_members) of bool
        Whether member m was fitted on row i (:meth:`InBag.mask`).
    key : ndarray of shape (n, n_members)
        What members are ranked by (rank matching's key).

    Returns
    -------
    ndarray like ``values``

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra.ensembles._oob import out_of_bag_view
    >>> values = np.array([[0.0, 5.0, 1.0, 3.0]])[..., None]
    >>> in_bag = np.array([[False, True, False, False]])  # member 1 saw the row
    >>> out_of_bag_view(values, in_bag, values[..., 0])[0, :, 0].tolist()
    [0.0, 1.0, 1.0, 3.0]
    """
    n, n_members = key.shape
    n_out = (~in_bag).sum(axis=1)
    order = np.argsort(np.where(in_bag, np.inf, key), axis=1, kind="stable")
    ranks = ((np.arange(n_members) + 0.5) / n_members * np.maximum(n_out, 1)[:, None]).astype(
        np.intp
    )
    picked = np.take_along_axis(order, ranks, axis=1)
    keep = n_out < MIN_OUT_OF_BAG
    picked[keep] = np.arange(n_members)
    picked = picked.reshape(picked.shape + (1,) * (values.ndim - 2))
    return np.take_along_axis(values, picked, axis=1)
