"""Ablations of a tree-teacher student: what changing one setting does to its fidelity.

The defaults for tree teachers (``temperature=4``, ``match_aleatoric="auto"`` and
``match_epistemic="auto"``, a
``(256, 256)`` body, about 20,000 synthetic rows, ``n_bins=16``) are compared,
one setting at a time, with the alternatives that could close the gaps
``fidelity_targets.md`` reports:

* ``temperature`` 2 and 8 (classifiers): how soft the heads' targets are;
* ``match_epistemic=False`` (classifiers): without the factor on the heads'
  deviations from their mean logit that makes their mean disagreement the
  members';
* ``match_aleatoric=False`` (classifiers): without the factor on the heads'
  logits that makes their mean entropy the members' (the spread's factor
  stays);
* ``body_layer_sizes=(512, 512)``: twice the body's width (capacity);
* ``augmentation_factor=2.5``: 2.5 times the synthetic rows (data);
* ``n_bins=64``: four times the bins of the split-point encoding (on digits,
  whose pixels take 17 values, the trees have fewer split points than 16 bins
  per feature, so this student is the defaults' own);
* ``out_of_bag=False``: the training rows labelled by every tree, not by their
  out-of-bag trees (the same student as the defaults for extra trees, which
  have no out-of-bag rows);
* "evaluation rows in the transfer set": not a setting a user has, a ceiling.
  The student is fitted on the training rows followed by the test and
  out-of-distribution rows it is then scored on (``fit(X)`` without ``y``, so
  labelled by the teacher alone, and ``out_of_bag=True``, so the training
  rows keep their out-of-bag views). How far the body and heads get where
  they were shown the teacher on the very rows they are scored on: the part
  of the gap to the targets that is the transfer set's (where the student
  learns the members' disagreement), not the network's;
* "half the evaluation rows in the transfer set": what a user can do, the
  realistic side of the ceiling. Every other test row and every other
  out-of-distribution row (the even positions) follow the training rows as
  unlabelled rows (as above, without ``y`` and with ``out_of_bag=True``), and
  the student is scored on the other half alone. The row below it scores the
  ``defaults`` student of the same split on that same half, its baseline:
  unlabelled rows from where the student will be used, not the rows it is
  then asked about;
* "MLP trained on y" (regressors): scikit-learn's ``MLPRegressor`` with the
  body's layer sizes, on the teacher's one-hot encoding, standardised, trained
  on the observed targets alone with early stopping. Context for the RMSE
  target: how far a network of the student's size gets without a teacher.

Cases: digits (classes 0-7, 8-9 out of distribution; ``digits_ood.py``) with a
100-tree forest and 100 extra trees, and from the tabular suite
(``tabular_fidelity.py``, the same splits and teachers) attrition with extra
trees, hotel_rates and Wage with a forest. Reported on the test + OOD rows as
in those scripts: ``rho`` and ``rho_ood`` (Spearman of student and teacher
epistemic), ``ratio`` (of their means), the student's and the teacher's mean
aleatoric part (classifiers), accuracy or the RMSE ratio to the teacher's,
for classifiers ``kl``, the KL divergence of the teacher's mean prediction
from the student's on the test rows (``skhydra.metrics.kl_to_teacher``),
epochs and fit time.

    python benchmarks/tree_ablations.py --output benchmarks/results/tree_ablations.md
    python benchmarks/tree_ablations.py --quick --output /tmp/a.md   # attrition, 1 split
    python benchmarks/tree_ablations.py --smoke --output /tmp/a.md   # seconds
"""

import argparse
import contextlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import digits_ood
import numpy as np
import pandas as pd
import tabular_fidelity
import torch
from _provenance import header, table, write_report
from _stats import cell
from scipy.stats import spearmanr
from sklearn.compose import TransformedTargetRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra.ensembles import predict_members
from skhydra.metrics import kl_to_teacher
from skhydra.uncertainty import classification_uncertainty, regression_uncertainty

HERE = Path(__file__).resolve().parent

#: case: (source, table or None, teacher kind)
CASES = {
    "digits:forest": ("digits", None, "forest"),
    "digits:extra_trees": ("digits", None, "extra_trees"),
    "attrition:extra_trees": ("tabular", "attrition", "extra_trees"),
    "hotel_rates:forest": ("tabular", "hotel_rates", "forest"),
    "Wage:forest": ("tabular", "Wage", "forest"),
}

#: The ceiling variant: the student also fitted on the rows it is scored on.
EVALUATION_ROWS = "evaluation rows in the transfer set"

#: Its realistic side: half of them in the transfer set, the other half scored.
HALF_ROWS = "half the evaluation rows in the transfer set"

#: variant: (student parameters, task it applies to or None for both)
VARIANTS = {
    "defaults": ({}, None),
    "temperature=2": ({"temperature": 2.0}, "classifier"),
    "temperature=8": ({"temperature": 8.0}, "classifier"),
    "match_aleatoric=False": ({"match_aleatoric": False}, "classifier"),
    "match_epistemic=False": ({"match_epistemic": False}, "classifier"),
    "body 512x512": ({"body_layer_sizes": (512, 512)}, None),
    "augmentation_factor=2.5": ({"augmentation_factor": 2.5}, None),
    "n_bins=64": ({"n_bins": 64}, None),
    "out_of_bag=False": ({"out_of_bag": False}, None),
    EVALUATION_ROWS: ({"out_of_bag": True}, None),
    HALF_ROWS: ({"out_of_bag": True}, None),
}

#: Students scored again on the half of the evaluation rows :data:`HALF_ROWS` is scored on.
HALF_BASELINES = ("defaults",)

SMOKE = {"body_layer_sizes": (16,), "phase1_epochs": 2, "max_epochs": 4}


def load(case, seed, cases=None):
    """(X_train, X_test, X_ood, y_train, y_test, task, teacher) of one case of ``cases``."""
    source, name, kind = (cases or CASES)[case]
    if source == "digits":
        X_tr, X_te, y_tr, y_te, X_ood = digits_ood.load(seed)
        return (
            X_tr,
            X_te,
            X_ood,
            y_tr,
            y_te,
            "classifier",
            digits_ood.teacher(kind, X_tr, y_tr, seed),
        )
    X_tr, X_te, X_ood, y_tr, y_te, task = tabular_fidelity.load(name, seed)
    ens = tabular_fidelity.teacher(kind, task, X_tr, y_tr, seed)
    return X_tr, X_te, X_ood, y_tr, y_te, task, ens


def _stack(X_te, X_ood):
    if isinstance(X_te, pd.DataFrame):
        return pd.concat([X_te, X_ood])
    return np.concatenate([X_te, X_ood])


def _take(X, rows):
    """Rows ``rows`` of a DataFrame or an array."""
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else X[rows]


def fidelity(task, teacher_members, student_members, n_test, y_te):
    """The row of one student given both sides' member predictions on test + OOD rows."""
    if task == "classifier":
        _, t_ale, t = classification_uncertainty(teacher_members)
        _, s_ale, s = classification_uncertainty(student_members)
        row = {"ale_s": float(s_ale.mean()), "ale_t": float(t_ale.mean())}
        t_pred = teacher_members[:n_test].mean(axis=1).argmax(axis=1)
        s_pred = student_members[:n_test].mean(axis=1).argmax(axis=1)
        row["acc_t"] = float(np.mean(t_pred == y_te))
        row["acc_s"] = float(np.mean(s_pred == y_te))
        row["kl"] = kl_to_teacher(
            teacher_members[:n_test].mean(axis=1), student_members[:n_test].mean(axis=1)
        )
    else:
        t = regression_uncertainty(teacher_members)[2]
        s = regression_uncertainty(student_members)[2]
        rmse_t = np.sqrt(np.mean((teacher_members[:n_test].mean(axis=1) - y_te) ** 2))
        rmse_s = np.sqrt(np.mean((student_members[:n_test].mean(axis=1) - y_te) ** 2))
        row = {"rmse_ratio": float(rmse_s / rmse_t)}
    row["rho"] = float(spearmanr(t, s).statistic)
    row["rho_ood"] = float(spearmanr(t[n_test:], s[n_test:]).statistic)
    row["ratio"] = float(s.mean() / t.mean())
    return row


def _fidelity_on(on, task, teacher_members, student_members, y_index, n_test):
    """:func:`fidelity` on the evaluation rows ``on`` (positions in test + OOD rows, of
    which the first ``n_test`` are the test rows; ``y_index`` the test rows' labels)."""
    test = on[on < n_test]
    return fidelity(task, teacher_members[on], student_members[on], len(test), y_index[test])


def members_of(model, X, task):
    """Member (or head) predictions: probabilities (n, m, classes) or means (n, m)."""
    if task == "regressor":
        return tabular_fidelity.member_means(model, X)
    return model.predict_members(X) if hasattr(model, "net_") else predict_members(model, X)


def mlp_on_y(X_tr, y_tr, X_te, y_te, rmse_teacher, seed, smoke):
    """RMSE ratio (to the teacher's) of an MLP of the body's size trained on ``y`` alone."""
    sizes = SMOKE["body_layer_sizes"] if smoke else (256, 256)
    mlp = MLPRegressor(
        hidden_layer_sizes=sizes,
        alpha=1e-4,
        early_stopping=True,
        max_iter=5 if smoke else 400,
        random_state=seed,
    )
    model = TransformedTargetRegressor(
        make_pipeline(tabular_fidelity.encoder(), StandardScaler(), mlp),
        transformer=StandardScaler(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_tr, y_tr)
    return float(np.sqrt(np.mean((model.predict(X_te) - y_te) ** 2)) / rmse_teacher)


def run_case(case, seed, variants, smoke, catalogue=None, cases=None, mlp=True):
    """Rows (variant, metrics) of one case and split.

    ``catalogue`` maps a variant to ``(student parameters, task or None)``, or to
    ``(parameters, task, patch)`` where ``patch(teacher)`` is a context manager the
    student is fitted within (default: :data:`VARIANTS`); ``cases``: as in :func:`load`;
    ``mlp``: add the row of an MLP trained on ``y`` (regressors).
    """
    X_tr, X_te, X_ood, y_tr, y_te, task, ens = load(case, seed, cases)
    X_all, n = _stack(X_te, X_ood), len(X_te)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        teacher_members = members_of(ens, X_all, task)
    # HALF_ROWS: the even positions of the test and of the OOD rows are shown, the odd scored.
    shown = np.r_[np.arange(0, n, 2), n + np.arange(0, len(X_ood), 2)]
    scored = np.r_[np.arange(1, n, 2), n + np.arange(1, len(X_ood), 2)]
    fit_rows = {EVALUATION_ROWS: _stack(X_tr, X_all), HALF_ROWS: _stack(X_tr, _take(X_all, shown))}
    Student = HydraDistilledClassifier if task == "classifier" else HydraDistilledRegressor
    rows, baselines = [], []
    for label in variants:
        params, only, *patch = (catalogue or VARIANTS)[label]
        if only not in (None, task):
            continue
        params = {**params, **(SMOKE if smoke else {})}
        within = patch[0](ens) if patch else contextlib.nullcontext()
        X_fit, y_fit = (fit_rows[label], None) if label in fit_rows else (X_tr, y_tr)
        begin = time.perf_counter()
        with warnings.catch_warnings(), within:
            warnings.simplefilter("ignore", UserWarning)
            student = Student(ens, random_state=seed, **params).fit(X_fit, y_fit)
        fit_s = time.perf_counter() - begin
        heads = members_of(student, X_all, task)
        if task == "classifier":  # heads' classes -> the teacher's class indices
            y_index = np.searchsorted(student.classes_, y_te)
        else:
            y_index = y_te
        both = (task, teacher_members, heads, y_index, n)
        timing = {"epochs": len(student.net_.history), "fit_s": fit_s}
        on = scored if label == HALF_ROWS else np.arange(len(X_all))
        rows.append((label, {**_fidelity_on(on, *both), **timing}))
        if label in HALF_BASELINES and HALF_ROWS in variants:
            half = {**_fidelity_on(scored, *both), **timing}
            baselines.append((f"{label}, scored on that half", half))
    rows += baselines
    if task == "regressor" and mlp:
        rmse_t = np.sqrt(np.mean((teacher_members[:n].mean(axis=1) - y_te) ** 2))
        ratio = mlp_on_y(X_tr, y_tr, X_te, y_te, rmse_t, seed, smoke)
        rows.append(("MLP trained on y (no teacher)", {"rmse_ratio": ratio}))
    return task, rows


COLUMNS = {
    "classifier": [
        "rho",
        "rho_ood",
        "ratio",
        "ale_s",
        "ale_t",
        "acc_s",
        "acc_t",
        "kl",
        "epochs",
        "fit_s",
    ],
    "regressor": ["rho", "rho_ood", "ratio", "rmse_ratio", "epochs", "fit_s"],
}


def case_table(task, runs):
    """Markdown table of one case: a row per variant, mean ± s.e. over the splits."""
    order = list(dict.fromkeys(label for rows in runs for label, _ in rows))
    lines = []
    for label in order:
        values = [row for rows in runs for name, row in rows if name == label]
        cells = []
        for column in COLUMNS[task]:
            present = [v[column] for v in values if column in v]
            digits = 1 if column in ("fit_s", "epochs") else 3
            cells.append(cell(present, digits) if present else "–")
        lines.append([label, *cells])
    return table(["variant", *COLUMNS[task]], lines)


@dataclass(frozen=True)
class Ablation:
    """One ablation script: its cases and variants, and how its report reads.

    ``quick_case`` is the one case of ``--quick`` and ``--smoke`` (one split);
    ``smoke_variants`` the variants of ``--smoke`` (None: all); ``mlp`` adds the
    row of an MLP trained on ``y`` for regressors; ``note`` opens the report
    after its provenance.
    """

    script: str
    title: str
    cases: dict
    catalogue: dict
    quick_case: str
    smoke_variants: list
    extra: list
    note: str
    mlp: bool


def ablate(ablation, doc, argv=None):
    """Run an ablation script's command line ``argv`` (its docstring ``doc``); write its report."""
    cases_of, catalogue = ablation.cases, ablation.catalogue
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cases", default=",".join(cases_of))
    parser.add_argument("--variants", default=",".join(catalogue))
    parser.add_argument("--repeats", type=int, default=2, help="splits and seeds 0, 1, ...")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    quick = ablation.quick_case.replace(":", " ").replace("_", " ")
    parser.add_argument("--quick", action="store_true", help=f"{quick}, 1 split")
    parser.add_argument("--smoke", action="store_true", help="the quick case, tiny students")
    parser.add_argument("--output", default=None, help="markdown report (default: results/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases, variants = args.cases.split(","), args.variants.split(",")
    unknown = sorted(set(cases) - set(cases_of)) + sorted(set(variants) - set(catalogue))
    if unknown:
        parser.error(f"unknown cases or variants: {unknown}")
    if args.quick or args.smoke:
        cases, args.repeats = [ablation.quick_case], 1
    if args.smoke and ablation.smoke_variants is not None:
        variants = ablation.smoke_variants
    start = time.perf_counter()
    results = []
    for case in cases:
        runs = []
        for seed in range(args.repeats):
            task, rows = run_case(
                case, seed, variants, args.smoke, catalogue, cases_of, mlp=ablation.mlp
            )
            for label, row in rows:
                print(json.dumps({"case": case, "seed": seed, "variant": label, **row}), flush=True)
            runs.append(rows)
        results.append((case, task, runs))
    lines = [
        header(
            ablation.title,
            f"benchmarks/{ablation.script}",
            sys.argv[1:] if argv is None else argv,
            list(range(args.repeats)),
            start,
            extra=ablation.extra,
        ),
        ablation.note,
    ]
    for case, task, runs in results:
        lines += [f"## {case}", "", case_table(task, runs)]
    report = "\n".join(lines)
    print(report)
    output = args.output
    if output is None and not (args.quick or args.smoke):
        output = HERE / "results" / Path(ablation.script).with_suffix(".md")
    if output is not None:
        write_report(output, report)
        rows = [
            {"case": c, "task": t, "runs": [[{"variant": v, **r} for v, r in run] for run in runs]}
            for c, t, runs in results
        ]
        Path(output).with_suffix(".json").write_text(json.dumps(rows, indent=1))


TREE_ABLATIONS = Ablation(
    script="tree_ablations.py",
    title="Tree-teacher ablations: one setting at a time",
    cases=CASES,
    catalogue=VARIANTS,
    quick_case="attrition:extra_trees",
    smoke_variants=["defaults", "match_aleatoric=False"],
    extra=["teachers: 100 trees (digits_ood.py, tabular_fidelity.py)"],
    note="Means ± standard errors over the splits; test + out-of-distribution rows; "
    "the variants and the MLP row are described in the script's docstring.\n",
    mlp=True,
)


def main(argv=None):
    ablate(TREE_ABLATIONS, __doc__, argv)


if __name__ == "__main__":
    main()
