"""Transfer-set ablations: synthetic rows that respect the teacher's one-hot columns.

A tree teacher's synthetic rows (``augmentation="auto"``) are drawn in the
student's input space, the teacher's numeric encoding, as if every column
were a number: MUNGE adds noise to a one-hot column, mixup and Gaussian
noise make fractional categories. None of these rows is a row the teacher
will meet. Three alternatives, each replacing the package's
``synthetic_rows`` during the fit (the student's parameters are the
defaults):

* ``unseen-category rows (10%)`` and ``(25%)``: that share of the synthetic
  rows (taken from the MUNGE half) are real rows with one one-hot block set
  to zero, the row a ``OneHotEncoder(handle_unknown="ignore")`` writes for a
  category it never saw (the out-of-distribution rows of
  ``tabular_fidelity.py`` are such rows);
* ``snapped rows``: every synthetic row's one-hot blocks set to their
  largest entry and its flags (columns of two values) to the nearer value;
* ``nominal MUNGE``: MUNGE as Bucilua et al. (2006) treat nominal
  attributes: a one-hot block or a flag is swapped whole with the
  neighbour's, without noise.

Cases: from the tabular suite (``tabular_fidelity.py``, the same splits and
teachers) Wage with a forest and extra trees, ames with extra trees,
attrition with a forest and extra trees, credit_data with a forest. Reported
as in ``tree_ablations.py``.

    python benchmarks/transfer_ablations.py --output benchmarks/results/transfer_ablations.md
    python benchmarks/transfer_ablations.py --quick --output /tmp/t.md   # attrition, 1 split
    python benchmarks/transfer_ablations.py --smoke --output /tmp/t.md   # seconds
"""

import contextlib

import numpy as np
import tree_ablations
from _onehot import nominal_groups, on_the_data, unseen_category_blocks, with_unseen_category

import skhydra._transfer as transfer

CASES = {
    "Wage:forest": ("tabular", "Wage", "forest"),
    "Wage:extra_trees": ("tabular", "Wage", "extra_trees"),
    "ames:extra_trees": ("tabular", "ames", "extra_trees"),
    "attrition:forest": ("tabular", "attrition", "forest"),
    "attrition:extra_trees": ("tabular", "attrition", "extra_trees"),
    "credit_data:forest": ("tabular", "credit_data", "forest"),
}


@contextlib.contextmanager
def _rows_replaced(draw):
    """Fit with ``synthetic_rows(X, kind, factor, noise_scale, rng)`` replaced by ``draw``."""
    original = transfer.synthetic_rows

    def replaced(X, kind, factor, noise_scale, rng):
        return draw(original, X, kind, factor, noise_scale, rng).astype(X.dtype)

    transfer.synthetic_rows = replaced
    try:
        yield
    finally:
        transfer.synthetic_rows = original


def unseen_rows(share):
    """Patch: ``share`` of the synthetic rows (of the MUNGE half) with an emptied block."""

    def patch(teacher):
        def draw(original, X, kind, factor, noise_scale, rng):
            blocks = unseen_category_blocks(teacher[0], X)
            if kind != "munge" or not blocks:
                return original(X, kind, factor, noise_scale, rng)
            n_munge = int(round(factor * len(X)))
            n_unseen = min(n_munge, int(round(share * 2 * n_munge)))  # MUNGE: half the rows
            munged = original(X, kind, (n_munge - n_unseen) / len(X), noise_scale, rng)
            return np.concatenate([munged, with_unseen_category(X, blocks, n_unseen, rng)])

        return _rows_replaced(draw)

    return patch


def snapped(teacher):
    """Patch: every synthetic row's one-hot blocks and flags snapped to the data's values."""

    def draw(original, X, kind, factor, noise_scale, rng):
        rows = original(X, kind, factor, noise_scale, rng)
        return on_the_data(rows, nominal_groups(teacher[0], X), X)

    return _rows_replaced(draw)


def nominal_munge(teacher):
    """Patch: MUNGE swaps one-hot blocks and flags whole, without noise."""

    def draw(original, X, kind, factor, noise_scale, rng):
        if kind != "munge":
            return original(X, kind, factor, noise_scale, rng)
        rows, partner = transfer.munge_pairs(X, int(round(factor * len(X))), rng)
        a, b = X[rows], X[partner]
        out = transfer.munge_mix(a, b, rng)
        for group in nominal_groups(teacher[0], X):
            take = rng.random(len(a)) < 0.5
            out[:, group] = np.where(take[:, None], b[:, group], a[:, group])
        return out

    return _rows_replaced(draw)


#: variant: (student parameters, task or None, patch)
VARIANTS = {
    "defaults": ({}, None),
    "unseen-category rows (10%)": ({}, None, unseen_rows(0.10)),
    "unseen-category rows (25%)": ({}, None, unseen_rows(0.25)),
    "snapped rows": ({}, None, snapped),
    "nominal MUNGE": ({}, None, nominal_munge),
}


TRANSFER_ABLATIONS = tree_ablations.Ablation(
    script="transfer_ablations.py",
    title="Transfer-set ablations: synthetic rows that respect one-hot columns",
    cases=CASES,
    catalogue=VARIANTS,
    quick_case="attrition:forest",
    smoke_variants=None,
    extra=["teachers: 100 trees (tabular_fidelity.py); students: default parameters"],
    note="Means ± standard errors over the splits; test + out-of-distribution rows; "
    "the variants are described in the script's docstring.\n",
    mlp=False,
)


def main(argv=None):
    tree_ablations.ablate(TRANSFER_ABLATIONS, __doc__, argv)


if __name__ == "__main__":
    main()
