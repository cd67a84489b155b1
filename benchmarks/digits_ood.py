"""Digits out-of-distribution benchmark: teacher vs KD (one head) vs Hydra.

Classes 0-7 of sklearn's digits are in-domain (train/test split), classes 8-9
are out-of-distribution. Teachers: a 5-seed MLP ensemble, a 100-tree random
forest and 100 extra trees. Prints one markdown table per teacher.

    python benchmarks/digits_ood.py                 # both teachers, defaults
    python benchmarks/digits_ood.py --teacher mlp,extra_trees --repeats 3
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _provenance import provenance
from sklearn.datasets import load_digits
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra import metrics as M
from skhydra.ensembles import predict_members
from skhydra.plotting import (
    ReliabilityDisplay,
    UncertaintyComparisonDisplay,
    UncertaintyShiftDisplay,
)


def load(seed):
    X, y = load_digits(return_X_y=True)
    inside = y < 8
    X_tr, X_te, y_tr, y_te = train_test_split(
        X[inside], y[inside], test_size=0.25, random_state=seed, stratify=y[inside]
    )
    return X_tr, X_te, y_tr, y_te, X[~inside]


def teacher(kind, X, y, seed):
    if kind == "forest":
        return RandomForestClassifier(n_estimators=100, random_state=seed).fit(X, y)
    if kind == "extra_trees":
        return ExtraTreesClassifier(n_estimators=100, random_state=seed).fit(X, y)
    return [
        make_pipeline(
            StandardScaler(),
            MLPClassifier((100,), max_iter=300, random_state=seed * 10 + s),
        ).fit(X, y)
        for s in range(5)
    ]


def evaluate(model, X_te, y_te, X_ood, ref):
    """Metrics of a model (teacher or student) against the teacher ``ref``."""
    members = (
        predict_members(model, X_te)
        if not hasattr(model, "net_")
        else (model.predict_members(X_te))
    )
    proba = members.mean(axis=1) if not hasattr(model, "net_") else model.predict_proba(X_te)
    u_te = predict_uncertainty(model, X_te)["epistemic"].to_numpy()
    u_ood = predict_uncertainty(model, X_ood)["epistemic"].to_numpy()
    row = {
        "acc": float(np.mean(np.argmax(proba, 1) == y_te)),
        "nll": M.negative_log_likelihood(y_te, proba),
        "brier": M.brier_score(y_te, proba),
        "ece": M.expected_calibration_error(y_te, proba),
        "auroc": M.ood_auroc(u_te, u_ood),
        "proba": proba,
        "u_te": u_te,
        "u_ood": u_ood,
    }
    if ref is not None:
        row["agree"] = M.agreement(ref["proba"], proba)
        row["kl"] = M.kl_to_teacher(ref["proba"], proba)
        u_all, r_all = np.r_[u_te, u_ood], np.r_[ref["u_te"], ref["u_ood"]]
        row["rho"] = M.uncertainty_spearman(r_all, u_all)
        row["rho_in"] = M.uncertainty_spearman(ref["u_te"], u_te)
        row["rho_ood"] = M.uncertainty_spearman(ref["u_ood"], u_ood)
        row["mse"] = M.uncertainty_mse(r_all, u_all)
        row["ratio"] = float(u_all.mean() / r_all.mean())
    return row


def save_plots(folder, kind, ens, hydra, X_te, y_te, X_ood, ref, row):
    """Student vs teacher uncertainty, in-domain vs OOD, reliability (first split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    UncertaintyComparisonDisplay.from_predictions(
        np.r_[ref["u_te"], ref["u_ood"]],
        np.r_[row["u_te"], row["u_ood"]],
        name="Hydra, test + OOD rows",
        ax=axes[0],
    )
    axes[0].set(xscale="log", yscale="log", title="Epistemic uncertainty (nats)")
    for ax, name, r in ((axes[1], "teacher", ref), (axes[2], "Hydra", row)):
        UncertaintyShiftDisplay.from_predictions(r["u_te"], r["u_ood"], name=name, ax=ax)
        ax.set_title(f"{name}: digits 0-7 (test) vs 8-9 (OOD)")
    ReliabilityDisplay.from_predictions(y_te, ref["proba"], name="teacher", ax=axes[3])
    ReliabilityDisplay.from_predictions(y_te, row["proba"], name="Hydra", ax=axes[3])
    fig.suptitle(f"digits OOD, teacher: {kind}")
    fig.tight_layout()
    path = Path(folder) / f"digits_ood_{kind}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"saved {path}", file=sys.stderr)


COLUMNS = [
    "acc",
    "nll",
    "brier",
    "ece",
    "agree",
    "kl",
    "rho",
    "rho_in",
    "rho_ood",
    "ratio",
    "mse",
    "auroc",
    "fit_s",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher", default="mlp,forest", help="comma-separated among mlp, forest, extra_trees"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="kd,hydra,hydra-paper,hydra-none,hydra-mixup")
    parser.add_argument(
        "--student-params", default="{}", help="JSON dict of HydraDistilledClassifier params"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--plots", default="benchmarks/results", help="folder for the PNG plots ('' for none)"
    )
    parser.add_argument("--output", default=None, help="markdown report with provenance")
    args = parser.parse_args()
    run_start = time.perf_counter()
    report = []

    def out(text=""):
        print(text)
        report.append(text)

    torch.set_num_threads(args.threads)
    extra = json.loads(args.student_params)
    kinds = args.teacher.split(",")
    variants = {
        "kd": dict(n_heads=1),
        "hydra": dict(),  # the defaults ("auto" head matching and augmentation)
        # skhydra 0.1's defaults: head m imitates member m, noise rows, full-width heads.
        "hydra-paper": dict(head_matching="member", augmentation="noise", head_rank=None),
        "hydra-full-heads": dict(head_rank=None),  # the defaults with the paper's full-width heads
        "hydra-none": dict(augmentation=None),
        "hydra-noise": dict(augmentation="noise"),
        "hydra-mixup": dict(augmentation="mixup"),
    }
    chosen = args.variants.split(",")
    for kind in kinds:
        results = {}
        for seed in range(args.repeats):
            X_tr, X_te, y_tr, y_te, X_ood = load(seed)
            start = time.perf_counter()
            ens = teacher(kind, X_tr, y_tr, seed)
            ref = evaluate(ens, X_te, y_te, X_ood, None)
            ref["fit_s"] = time.perf_counter() - start
            results.setdefault("teacher", []).append(ref)
            for name in chosen:
                start = time.perf_counter()
                hydra = HydraDistilledClassifier(
                    ens, random_state=seed, **{**extra, **variants[name]}
                )
                hydra.fit(X_tr)
                fit_s = time.perf_counter() - start
                row = evaluate(hydra, X_te, y_te, X_ood, ref)
                row["fit_s"] = fit_s
                results.setdefault(name, []).append(row)
                if args.plots and seed == 0 and name == "hydra":
                    save_plots(args.plots, kind, ens, hydra, X_te, y_te, X_ood, ref, row)
        out(f"\n## Teacher: {kind} ({args.repeats} splits, mean ± s.e.)\n")
        out("| model | " + " | ".join(COLUMNS) + " |")
        out("|---" * (len(COLUMNS) + 1) + "|")
        for name, rows in results.items():
            cells = []
            for col in COLUMNS:
                values = [r[col] for r in rows if col in r]
                if not values:
                    cells.append("")
                    continue
                se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0
                cells.append(f"{np.mean(values):.3f} ± {se:.3f}")
            out(f"| {name} | " + " | ".join(cells) + " |")
    if args.output:
        header = "# Digits out-of-distribution benchmark\n\n" + provenance(
            "benchmarks/digits_ood.py", sys.argv[1:], list(range(args.repeats)), run_start
        )
        Path(args.output).write_text(header + "\n" + "\n".join(report) + "\n")


if __name__ == "__main__":
    main()
