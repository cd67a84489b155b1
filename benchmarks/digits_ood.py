"""Digits out-of-distribution benchmark: teacher vs KD (one head) vs Hydra.

Classes 0-7 of sklearn's digits are in-domain (train/test split), classes 8-9
are out-of-distribution. Teachers: a 5-seed MLP ensemble, a 100-tree random
forest and 100 extra trees. Writes one markdown table per teacher, with
findings generated from the run (differences called out only beyond the
combined standard error).

Variants: ``kd`` is the student with one head at the package defaults
(``temperature=4``, chosen for Hydra's uncertainty); ``kd-tuned`` is KD at its
own best: per split, its temperature (1, 2, 4) and schedule are chosen by the
validation NLL on a quarter of the training rows, with a teacher fitted on
the other three quarters (the test rows are never used), then it is refitted
on all training rows (``_kd.py``). The other variants are Hydra settings.
The row "teacher, another seed" is the same kind of ensemble fitted on the
same rows with another seed, measured against the teacher like a student: how
reproducible the teacher's own uncertainty is (a 100-tree forest's votes are
a Monte-Carlo estimate), the context of the students' ``rho`` and ``ratio``.

    python benchmarks/digits_ood.py --output benchmarks/results/digits_ood.md
    python benchmarks/digits_ood.py --teacher mlp,extra_trees --repeats 3
    python benchmarks/digits_ood.py --quick --output /tmp/digits_ood.md   # about a minute
    python benchmarks/digits_ood.py --smoke --output /tmp/digits_ood.md   # seconds
"""

import argparse
import json
import sys
import time
from pathlib import Path

import _kd
import numpy as np
import torch
from _provenance import header, write_report
from _stats import cell, sentence
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

#: Seed offset of the reference teacher (the row "teacher, another seed").
REFERENCE_SEED = 1000


def load(seed):
    X, y = load_digits(return_X_y=True)
    inside = y < 8
    X_tr, X_te, y_tr, y_te = train_test_split(
        X[inside], y[inside], test_size=0.25, random_state=seed, stratify=y[inside]
    )
    return X_tr, X_te, y_tr, y_te, X[~inside]


def teacher(kind, X, y, seed, size=None):
    """The ensemble: ``size`` trees (default 100) or MLPs (default 5)."""
    if kind == "forest":
        return RandomForestClassifier(n_estimators=size or 100, random_state=seed).fit(X, y)
    if kind == "extra_trees":
        return ExtraTreesClassifier(n_estimators=size or 100, random_state=seed).fit(X, y)
    return [
        make_pipeline(
            StandardScaler(),
            MLPClassifier((100,), max_iter=300, random_state=seed * 10 + s),
        ).fit(X, y)
        for s in range(size or 5)
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

VARIANTS = {
    "kd": dict(n_heads=1),
    "kd-tuned": None,  # chosen per split on validation rows, see tune_kd
    "hydra": dict(),  # the defaults ("auto" head matching and augmentation)
    # The defaults before out-of-bag views and the split-point encoding (7e5dfe4).
    "hydra-previous": dict(
        feature_encoding=None, out_of_bag=False, match_aleatoric=False, match_epistemic=False
    ),
    # The defaults without the heads' factors after training (those of 1fd8465).
    "hydra-unmatched": dict(match_aleatoric=False, match_epistemic=False),
    # The defaults without the factor on the heads' spread (those of 076790b).
    "hydra-unspread": dict(match_epistemic=False),
    # skhydra 0.1's defaults: head m imitates member m, noise rows, full-width heads.
    "hydra-paper": dict(
        head_matching="member",
        augmentation="noise",
        head_rank=None,
        feature_encoding=None,
        out_of_bag=False,
        match_aleatoric=False,
        match_epistemic=False,
    ),
    "hydra-full-heads": dict(head_rank=None),  # the defaults with the paper's full-width heads
    "hydra-none": dict(augmentation=None),
    "hydra-noise": dict(augmentation="noise"),
    "hydra-mixup": dict(augmentation="mixup"),
}

#: Small modes: teachers, splits, variants, teacher size, student overrides, KD grid.
SMOKE = dict(
    teacher="forest",
    repeats=1,
    variants="kd,kd-tuned,hydra",
    size=10,
    student={"body_layer_sizes": (16,), "phase1_epochs": 2, "max_epochs": 4},
    schedules={"2+2": (2, 4)},
    temperatures=(1.0, 4.0),
)
QUICK = dict(
    teacher="forest",
    repeats=2,
    variants="kd,kd-tuned,hydra",
    size=None,
    student={"phase1_epochs": 10, "max_epochs": 30},
    schedules={"10+20": (10, 30)},
    temperatures=_kd.TEMPERATURES,
)


def settings_key(params):
    """The full settings of a student with ``params`` (defaults filled in), as a key."""
    full = {
        k: v for k, v in HydraDistilledClassifier(**params).get_params().items() if k != "ensemble"
    }
    return json.dumps(full, sort_keys=True, default=repr)


def tune_kd(kind, X_tr, y_tr, seed, size, extra, schedules, temperatures):
    """KD's temperature and schedule by the NLL on a quarter of the training rows."""
    X_in, X_va, y_in, y_va = train_test_split(
        X_tr, y_tr, test_size=0.25, random_state=seed, stratify=y_tr
    )
    ens = teacher(kind, X_in, y_in, seed, size)

    def nll(params):
        student = HydraDistilledClassifier(ens, random_state=seed, **params).fit(X_in)
        return M.negative_log_likelihood(y_va, student.predict_proba(X_va))

    candidates = {
        name: {**extra, **params}
        for name, params in _kd.grid(True, schedules, temperatures).items()
    }
    best, scores = _kd.select(candidates, nll)
    return best, scores, candidates[best]


def findings(results):
    """Generated sentences: Hydra against KD (tuned and default) on the in-domain metrics."""
    lines = []
    for other in ("kd-tuned", "kd"):
        if "hydra" not in results or other not in results:
            continue
        for key, label, lower in (
            ("acc", "accuracy", False),
            ("nll", "NLL", True),
            ("brier", "Brier", True),
            ("ece", "ECE", True),
        ):
            a = [r[key] for r in results["hydra"]]
            b = [r[key] for r in results[other]]
            lines.append(f"* {sentence(label, 'hydra', a, other, b, lower)}.")
    if "kd-tuned" in results and "kd" in results:
        for key, label, lower in (("acc", "accuracy", False), ("nll", "NLL", True)):
            a = [r[key] for r in results["kd-tuned"]]
            b = [r[key] for r in results["kd"]]
            lines.append(f"* {sentence(label, 'kd-tuned', a, 'kd', b, lower)}.")
    if not lines:
        return ""
    return "Findings, generated from this run's splits:\n\n" + "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher", default="mlp,forest", help="comma-separated among mlp, forest, extra_trees"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        default="kd,kd-tuned,hydra,hydra-paper,hydra-none,hydra-mixup",
        help="comma-separated among " + ", ".join(VARIANTS),
    )
    parser.add_argument(
        "--student-params", default="{}", help="JSON dict of HydraDistilledClassifier params"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--plots", default=None, help="folder for the PNG plots (default: that of --output)"
    )
    parser.add_argument("--output", default=None, help="markdown report with provenance")
    parser.add_argument("--quick", action="store_true", help="forest, 2 splits, short fits")
    parser.add_argument("--smoke", action="store_true", help="10 trees, 1 split, tiny fits")
    args = parser.parse_args(argv)
    run_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    extra = json.loads(args.student_params)
    for key in ("body_layer_sizes", "head_layer_sizes"):
        if isinstance(extra.get(key), list):
            extra[key] = tuple(extra[key])
    size, schedules, temperatures = None, _kd.SCHEDULES, _kd.TEMPERATURES
    mode = SMOKE if args.smoke else QUICK if args.quick else None
    if mode is not None:
        args.teacher, args.repeats, args.variants = (
            mode["teacher"],
            mode["repeats"],
            mode["variants"],
        )
        size, schedules, temperatures = mode["size"], mode["schedules"], mode["temperatures"]
        extra = {**mode["student"], **extra}
    plots = args.plots if args.plots is not None else args.output and str(Path(args.output).parent)
    kinds = args.teacher.split(",")
    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose among {list(VARIANTS)}")
    sections = []
    for kind in kinds:
        results, choices = {}, []
        for seed in range(args.repeats):
            X_tr, X_te, y_tr, y_te, X_ood = load(seed)
            start = time.perf_counter()
            ens = teacher(kind, X_tr, y_tr, seed, size)
            ref = evaluate(ens, X_te, y_te, X_ood, None)
            ref["fit_s"] = time.perf_counter() - start
            results.setdefault("teacher", []).append(ref)
            # The teacher's own reproducibility: the same kind refitted with another seed,
            # measured against the teacher like a student (the context of the students' rho).
            start = time.perf_counter()
            other = teacher(kind, X_tr, y_tr, seed + REFERENCE_SEED, size)
            reseeded = evaluate(other, X_te, y_te, X_ood, ref)
            reseeded["fit_s"] = time.perf_counter() - start
            results.setdefault("teacher, another seed", []).append(reseeded)
            fitted = {}
            for name in chosen:
                params = {**extra, **(VARIANTS[name] or {})}
                if name == "kd-tuned":
                    best, scores, params = tune_kd(
                        kind, X_tr, y_tr, seed, size, extra, schedules, temperatures
                    )
                    choices.append((best, scores))
                key = settings_key(params)
                if key not in fitted:  # kd-tuned may have chosen kd's settings: the same fit
                    start = time.perf_counter()
                    hydra = HydraDistilledClassifier(ens, random_state=seed, **params)
                    hydra.fit(X_tr)
                    fit_s = time.perf_counter() - start
                    row = evaluate(hydra, X_te, y_te, X_ood, ref)
                    row["fit_s"] = fit_s
                    fitted[key] = row
                    if plots and seed == 0 and name == "hydra":
                        save_plots(plots, kind, ens, hydra, X_te, y_te, X_ood, ref, row)
                results.setdefault(name, []).append(fitted[key])
                print(f"[{kind} split {seed}] {name}: acc {fitted[key]['acc']:.3f}", flush=True)
        lines = [
            f"## Teacher: {kind} ({args.repeats} split{'s' * (args.repeats > 1)}, mean ± s.e.)",
            "",
            "| model | " + " | ".join(COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 1) + "|",
        ]
        for name, rows in results.items():
            cells = [cell([r.get(col) for r in rows]) for col in COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        section = "\n".join(lines)
        found = findings(results)
        if found:
            section += "\n\n" + found
        if choices:
            section += (
                f"\n\nKD's temperature and schedule ({kind} teacher), chosen per split by the "
                "validation NLL (a quarter of the training rows, teacher refitted on the rest):"
                "\n\n"
                + _kd.tuning_table(choices)
                + "\n\nChosen per split: "
                + "; ".join(f"{i}: {best}" for i, (best, _) in enumerate(choices))
            )
        sections.append(section)
        print("\n" + section + "\n", flush=True)
    report = header(
        "Digits out-of-distribution benchmark",
        "benchmarks/digits_ood.py",
        argv,
        list(range(args.repeats)),
        run_start,
        extra=[
            f"student parameters (all variants): {extra or 'defaults'}",
            "KD grid: temperatures "
            + ", ".join(f"{t:g}" for t in temperatures)
            + "; schedules "
            + ", ".join(schedules),
        ],
    )
    report += "\n" + "\n\n".join(sections)
    if args.output:
        write_report(args.output, report)


if __name__ == "__main__":
    main()
