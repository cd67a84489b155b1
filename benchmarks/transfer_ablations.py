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

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import tree_ablations
from _onehot import nominal_groups, on_the_data, unseen_category_blocks, with_unseen_category
from _provenance import header, write_report

import skhydra._transfer as transfer

HERE = Path(__file__).resolve().parent

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2, help="splits and seeds 0, 1, ...")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="attrition forest, 1 split")
    parser.add_argument("--smoke", action="store_true", help="the quick case, tiny students")
    parser.add_argument("--output", default=None, help="markdown report (default: results/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases, variants = args.cases.split(","), args.variants.split(",")
    unknown = sorted(set(cases) - set(CASES)) + sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown cases or variants: {unknown}")
    if args.quick or args.smoke:
        cases, args.repeats = ["attrition:forest"], 1
    start = time.perf_counter()
    results = []
    for case in cases:
        runs = []
        for seed in range(args.repeats):
            task, rows = tree_ablations.run_case(
                case, seed, variants, args.smoke, catalogue=VARIANTS, cases=CASES, mlp=False
            )
            for label, row in rows:
                print(json.dumps({"case": case, "seed": seed, "variant": label, **row}), flush=True)
            runs.append(rows)
        results.append((case, task, runs))
    lines = [
        header(
            "Transfer-set ablations: synthetic rows that respect one-hot columns",
            "benchmarks/transfer_ablations.py",
            sys.argv[1:] if argv is None else argv,
            list(range(args.repeats)),
            start,
            extra=["teachers: 100 trees (tabular_fidelity.py); students: default parameters"],
        ),
        "Means ± standard errors over the splits; test + out-of-distribution rows; "
        "the variants are described in the script's docstring.\n",
    ]
    for case, task, runs in results:
        lines += [f"## {case}", "", tree_ablations.case_table(task, runs)]
    report = "\n".join(lines)
    print(report)
    output = args.output
    if output is None and not (args.quick or args.smoke):
        output = HERE / "results" / "transfer_ablations.md"
    if output is not None:
        write_report(output, report)
        rows = [
            {"case": c, "task": t, "runs": [[{"variant": v, **r} for v, r in run] for run in runs]}
            for c, t, runs in results
        ]
        Path(output).with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
