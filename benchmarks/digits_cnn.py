"""Digits as 8x8 images: a CNN ensemble distilled into a CNN Hydra, vs KD.

Classes 0-7 of sklearn's digits, kept as images of shape (1, 8, 8), are
in-domain (stratified 75/25 train/test split per repeat). The teacher is five
small CNNs (torch modules, one seed each, trained on the training split). Two
students share one CNN body (:class:`CNNBody`) and linear heads: KD
(``n_heads=1``) and Hydra (one head per CNN). They are scored on the in-domain
test split and on three out-of-distribution (OOD) sets:

* A: the digits 8 and 9 (classes never seen);
* B1: the in-domain test digits rotated by 90 degrees (``np.rot90``);
* B2: the in-domain test digits plus Gaussian noise of standard deviation 4
  grey levels (of 0-16), clipped to [0, 16].

KD is reported twice: at Hydra's settings with one head ("KD (1 head)", the
default ``temperature=4``), and at its own best ("KD (1 head, tuned)"): per
split, its temperature (1, 2, 4) and schedule are chosen by the validation NLL
on a quarter of the training rows, with a teacher trained on the other three
quarters (``_kd.py``; the test rows are never used), then it is refitted on
all training rows.

Writes a markdown report to benchmarks/results/digits_cnn.md (and a figure);
every number in it, findings included, comes from the run that wrote it.

    python benchmarks/digits_cnn.py                # 3 splits, the report
    python benchmarks/digits_cnn.py --tune         # first compares student settings
    python benchmarks/digits_cnn.py --quick --output /tmp/cnn.md   # 2 splits, short fits
    python benchmarks/digits_cnn.py --smoke --output /tmp/cnn.md   # seconds, a logic test
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _kd  # noqa: E402
from _provenance import header, write_report  # noqa: E402
from _stats import cell, mean_se, sentence  # noqa: E402

from skhydra import HydraDistilledClassifier, predict_uncertainty  # noqa: E402
from skhydra import metrics as M  # noqa: E402
from skhydra.ensembles import predict_members  # noqa: E402

N_MEMBERS = 5
IN_CLASSES = 8
NOISE_SD = 4.0  # OOD set B2, in grey levels (pixels are 0-16)
TEACHER = dict(epochs=30, lr=3e-3, batch_size=64)
OOD_SETS = ("A", "B1", "B2")
OOD_NAMES = {
    "A": "A: digits 8-9",
    "B1": "B1: test digits rotated 90°",
    "B2": f"B2: test digits + N(0, {NOISE_SD:g}²) noise",
}


def _conv_features(c):
    """Two 3x3 convolutions (1 -> c -> 2c channels) and a 2x2 max-pool, flattened."""
    return [
        nn.Conv2d(1, c, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    ]


class TeacherCNN(nn.Module):
    """One ensemble member: two 3x3 convolutions, 2x2 max pooling, a linear layer.

    Takes raw digits (N, 1, 8, 8) with grey levels 0-16 (it scales them by
    1/16 itself) and returns logits (N, 8).
    """

    def __init__(self, channels=8, n_classes=IN_CLASSES):
        super().__init__()
        self.net = nn.Sequential(*_conv_features(channels), nn.Linear(2 * channels * 16, n_classes))

    def forward(self, x):
        return self.net(x / 16.0)


class CNNBody(nn.Module):
    """The students' shared body: the members' convolutions, then ``hidden`` features.

    Maps standardised digits (N, 1, 8, 8) to (N, hidden) ReLU features; the
    heads on top are linear (``head_layer_sizes=()``), ``hidden * 8 + 8``
    parameters each, which keeps Hydra's extra heads light.
    """

    def __init__(self, channels=8, hidden=32):
        super().__init__()
        self.net = nn.Sequential(
            *_conv_features(channels), nn.Linear(2 * channels * 16, hidden), nn.ReLU()
        )

    def forward(self, x):
        return self.net(x)


# The students' settings, chosen with --tune (see NOTES). KD gets the same with n_heads=1.
STUDENT = dict(
    body=CNNBody,
    body_params=dict(channels=8, hidden=32),
    head_layer_sizes=(),
    phase1_epochs=100,
    max_epochs=400,
    augmentation="noise",
    noise_scale=1.0,
)

# Candidates compared by --tune (Hydra, on inner validation splits).
TUNE_VARIANTS = {
    "defaults: noise 0.5, 100+300 ep": dict(noise_scale=0.5),
    "no augmentation": dict(augmentation=None, noise_scale=0.5),
    "mixup": dict(augmentation="mixup"),
    "noise 1.0 (chosen)": dict(),
    "noise 1.0, 50+150 ep": dict(phase1_epochs=50, max_epochs=200),
    "noise 1.0, hidden 16": dict(body_params=dict(channels=8, hidden=16)),
}

#: KD's grid of schedules (Hydra's, and half of it); temperatures from ``_kd``.
KD_SCHEDULES = {"100+300": (100, 400), "50+150": (50, 200)}

#: Small modes: teacher epochs, student epochs, KD grid, tuning splits.
QUICK = dict(
    teacher_epochs=10,
    phase1_epochs=10,
    max_epochs=30,
    repeats=2,
    schedules={"10+20": (10, 30)},
    temperatures=_kd.TEMPERATURES,
    tune_seeds=[100],
)
SMOKE = dict(
    teacher_epochs=1,
    phase1_epochs=1,
    max_epochs=2,
    repeats=1,
    schedules={"1+1": (1, 2)},
    temperatures=(1.0, 4.0),
    tune_seeds=[100],
)

TEACHER_NAME, KD_NAME, KD_TUNED, HYDRA_NAME = (
    "teacher (5 CNNs)",
    "KD (1 head)",
    "KD (1 head, tuned)",
    "Hydra (5 heads)",
)


def as_images(X):
    return X.reshape(-1, 1, 8, 8).astype(np.float32)


def ood_sets(X_in, X_unseen, seed):
    """The three OOD sets built from in-domain rows ``X_in`` and the digits 8-9."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(X_in + rng.normal(0.0, NOISE_SD, X_in.shape), 0.0, 16.0)
    return {
        "A": X_unseen,
        "B1": np.ascontiguousarray(np.rot90(X_in, k=1, axes=(2, 3))),
        "B2": noisy.astype(np.float32),
    }


def load(seed, inner=False):
    """Train and evaluation rows of one split; ``inner`` splits the training rows again."""
    X, y = load_digits(return_X_y=True)
    X = as_images(X)
    inside = y < IN_CLASSES
    X_tr, X_te, y_tr, y_te = train_test_split(
        X[inside], y[inside], test_size=0.25, random_state=seed, stratify=y[inside]
    )
    if inner:  # tuning: validate on a quarter of the training rows, never on the test rows
        X_tr, X_te, y_tr, y_te = train_test_split(
            X_tr, y_tr, test_size=0.25, random_state=seed, stratify=y_tr
        )
    return X_tr, y_tr, X_te, y_te, ood_sets(X_te, X[~inside], seed)


def train_teacher(X, y, seed, epochs):
    """Five CNNs: own initialisation and minibatch order each, Adam + cross-entropy."""
    members = []
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    for m in range(N_MEMBERS):
        torch.manual_seed(1000 * seed + m)
        net = TeacherCNN()
        optimizer = torch.optim.Adam(net.parameters(), lr=TEACHER["lr"])
        for _ in range(epochs):
            order = torch.randperm(len(Xt))
            for start in range(0, len(Xt), TEACHER["batch_size"]):
                batch = order[start : start + TEACHER["batch_size"]]
                optimizer.zero_grad()
                nn.functional.cross_entropy(net(Xt[batch]), yt[batch]).backward()
                optimizer.step()
        members.append(net.eval())
    return members


def n_params(model):
    modules = model if isinstance(model, list) else [model.net_.module_]
    return sum(p.numel() for m in modules for p in m.parameters())


def _normalised(p):
    # float32 probabilities sum to 1 only within ~1e-7; log_loss warns about that.
    p = np.asarray(p, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


def evaluate(model, X_te, y_te, sets, ref):
    """Metrics of the teacher (a list of modules) or a student against the teacher ``ref``."""
    is_teacher = isinstance(model, list)
    rows = {"test": X_te, **sets}
    start = time.perf_counter()
    if is_teacher:
        members = {k: predict_members(model, v, task="classifier") for k, v in rows.items()}
    else:
        members = {k: model.predict_members(v) for k, v in rows.items()}
    predict_s = time.perf_counter() - start
    task = "classifier" if is_teacher else None
    unc = {k: predict_uncertainty(model, v, task=task) for k, v in rows.items()}
    epi = {k: u["epistemic"].to_numpy() for k, u in unc.items()}
    tot = {k: u["total"].to_numpy() for k, u in unc.items()}
    proba = _normalised(members["test"].mean(axis=1))
    row = {
        "acc": float(np.mean(proba.argmax(axis=1) == y_te)),
        "nll": M.negative_log_likelihood(y_te, proba),
        "ece": M.expected_calibration_error(y_te, proba),
        "params": n_params(model),
        "predict_ms": 1000 * predict_s,
        "proba": proba,
        "epi": epi,
    }
    for k in OOD_SETS:
        row[f"auroc_{k}"] = M.ood_auroc(epi["test"], epi[k])
        row[f"auroc_total_{k}"] = M.ood_auroc(tot["test"], tot[k])
    if ref is not None:
        row["agree"] = M.agreement(ref["proba"], proba)
        constant = all(np.ptp(e) == 0 for e in epi.values())
        if not constant:  # KD: epistemic is 0 everywhere, a rank correlation is undefined
            row["rho"] = M.uncertainty_spearman(
                np.concatenate(list(ref["epi"].values())), np.concatenate(list(epi.values()))
            )
            for k in rows:
                row[f"rho_{k}"] = M.uncertainty_spearman(ref["epi"][k], epi[k])
    return row


def fit_student(members, X, seed, params):
    start = time.perf_counter()
    est = HydraDistilledClassifier(members, random_state=seed, **params).fit(X)
    return est, time.perf_counter() - start


def student_row(est, fit_s, X_te, y_te, sets, ref):
    row = evaluate(est, X_te, y_te, sets, ref)
    row["fit_s"] = fit_s
    row["epochs"] = len(est.net_.history)  # both phases
    return row


# -- report ---------------------------------------------------------------------------------


def table(results, columns):
    """Markdown table of ``results`` (name -> list of rows) over ``columns`` (key, header, digits)."""
    lines = [
        "| model | " + " | ".join(h for _, h, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, rows in results.items():
        cells = [cell([r.get(k) for r in rows], d) for k, _, d in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


MAIN_COLUMNS = [
    ("acc", "accuracy ↑", 3),
    ("nll", "NLL ↓", 3),
    ("ece", "ECE ↓", 3),
    ("agree", "agreement", 3),
    ("rho", "ρ epistemic", 3),
    ("auroc_A", "AUROC A", 3),
    ("auroc_B1", "AUROC B1", 3),
    ("auroc_B2", "AUROC B2", 3),
    ("epochs", "epochs", 0),
    ("fit_s", "fit s", 1),
    ("predict_ms", "predict ms", 1),
]
DETAIL_COLUMNS = [
    ("rho_test", "ρ test", 3),
    ("rho_A", "ρ A", 3),
    ("rho_B1", "ρ B1", 3),
    ("rho_B2", "ρ B2", 3),
    ("auroc_total_A", "AUROC A (total)", 3),
    ("auroc_total_B1", "AUROC B1 (total)", 3),
    ("auroc_total_B2", "AUROC B2 (total)", 3),
]

NOTES = """\
**Metrics.** Accuracy, NLL (nats) and ECE (15 bins) of the mean prediction on the in-domain
test split (digits 0-7). Agreement: fraction of test rows where the student's and the teacher's
argmax agree. ρ epistemic: Spearman correlation of the student's epistemic uncertainty (mutual
information of its heads) with the teacher's (of its 5 CNNs), over the test rows and the three
OOD sets together (the same rows as `digits_ood.py`, plus B1 and B2); per set in the second
table. AUROC X: how well the epistemic uncertainty separates OOD set X from the in-domain test
rows (0.5 chance). KD has one head, so its epistemic uncertainty is 0 everywhere: ρ is undefined
(–) and its AUROC is 0.5 by construction; the second table gives every model's AUROC from the
total uncertainty (entropy of the mean prediction) as the fair comparison for KD. fit s: the 5
CNNs' training, or the student's `fit` (teacher predictions included; for the tuned KD its final
fit, not its choice). predict ms: per-member (or per-head) probabilities of all the evaluated
rows (test + A + B1 + B2), one call per set. Timings come from a machine shared with other jobs.

**Teacher.** 5 × `TeacherCNN` (conv 3x3 1→8, ReLU, conv 3x3 8→16, ReLU, 2x2 max-pool, linear
256→8; scales x/16 inside), each from its own seed (initialisation and minibatch order), Adam
lr 3e-3, batch 64, cross-entropy on the whole in-domain training split, no bootstrap.

**Students.** Body `CNNBody(channels=8, hidden=32)`: the members' two convolutions and pooling,
then a linear layer to 32 ReLU features; heads are linear (`head_layer_sizes=()`). Inputs are
the raw (n, 1, 8, 8) digits; the student standardises them per channel (`input_scaling="auto"`).
Hydra and "KD (1 head)" have identical settings except `n_heads`; "KD (1 head, tuned)" has its
own temperature and schedule, chosen per split as described above (table below).

**Student settings.** `--tune` compares Hydra settings on inner validation splits (a quarter of
each training split, seeds 100 and 101; the test rows are never used for the choice; B1 and B2
are built from the validation rows, A is the digits 8-9 as above). Criterion: the highest ρ
epistemic (fidelity to the teacher's uncertainty, what Hydra is for), with accuracy and NLL as
guards. The settings used are those of `STUDENT` in the script.

**Figure** (`digits_cnn.png`, split 0): one image of each set; the teacher's against Hydra's
epistemic uncertainty per row; its histograms per set for the teacher and for Hydra. Values below
1e-6 nats are drawn at 1e-6."""


def findings(results, tuned):
    """Generated sentences: what this run's tables say, with the standard-error rule."""
    values = {name: rows for name, rows in results.items()}

    def col(name, key):
        return [r.get(key) for r in values[name]]

    lines = []
    for other in (TEACHER_NAME, KD_TUNED, KD_NAME):
        if other not in values:
            continue
        for key, label, lower in (("acc", "accuracy", False), ("nll", "NLL", True)):
            lines.append(
                "* " + sentence(label, "Hydra", col(HYDRA_NAME, key), other, col(other, key), lower)
            )
    for k in OOD_SETS:
        lines.append(
            "* "
            + sentence(
                f"AUROC {k} (epistemic)",
                "Hydra",
                col(HYDRA_NAME, f"auroc_{k}"),
                "the teacher",
                col(TEACHER_NAME, f"auroc_{k}"),
                False,
            )
        )
    for other in (KD_TUNED, KD_NAME):
        if other in values:
            lines.append(
                "* "
                + sentence(
                    "AUROC A (total uncertainty)",
                    "Hydra",
                    col(HYDRA_NAME, "auroc_total_A"),
                    other,
                    col(other, "auroc_total_A"),
                    False,
                )
            )
    rho, rho_se = mean_se(col(HYDRA_NAME, "rho"))
    lines.append(
        f"* Hydra's ρ epistemic with the teacher over test + OOD rows: {rho:.3f} ± {rho_se:.3f}."
    )
    t_ms, _ = mean_se(col(TEACHER_NAME, "predict_ms"))
    h_ms, _ = mean_se(col(HYDRA_NAME, "predict_ms"))
    lines.append(
        f"* Predicting every evaluated row took the teacher {t_ms:.1f} ms and Hydra {h_ms:.1f} ms "
        f"(mean over splits; {t_ms / h_ms:.1f}x) on this shared machine."
    )
    if tuned:
        best = max(
            (name for name in tuned if name != "teacher"),
            key=lambda name: mean_se([r.get("rho") for r in tuned[name]])[0],
        )
        lines.append(
            f"* Tuning: the setting with the highest mean ρ on the validation splits is "
            f'"{best}" ({cell([r.get("rho") for r in tuned[best]])}).'
        )
    return "## Findings, generated from this run\n\n" + "\n".join(lines)


def save_plot(path, ref, hydra_row, X_te, sets):
    """Teacher vs Hydra epistemic uncertainty on the test rows and each OOD set (split 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["test", *OOD_SETS]
    labels = {"test": "test digits 0-7", **OOD_NAMES}
    floor = 1e-6
    fig = plt.figure(figsize=(17, 4.2))
    grid = fig.add_gridspec(2, 8, width_ratios=[1, 1, 0.25, 4, 0.25, 4, 0.25, 4])
    examples = {"test": X_te, **sets}
    for i, name in enumerate(names):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        ax.imshow(examples[name][0, 0], cmap="gray_r", vmin=0, vmax=16)
        ax.set(xticks=[], yticks=[], title=name)
    ax = fig.add_subplot(grid[:, 3])
    for name in names:
        ax.scatter(
            np.maximum(ref["epi"][name], floor),
            np.maximum(hydra_row["epi"][name], floor),
            s=6,
            alpha=0.5,
            label=labels[name],
        )
    ax.plot([floor, 1], [floor, 1], "k--", lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="teacher (5 CNNs)",
        ylabel="Hydra",
        title=f"epistemic uncertainty (nats), ρ = {hydra_row['rho']:.3f}",
    )
    ax.legend(fontsize=7, markerscale=2)
    bins = np.logspace(np.log10(floor), 0, 40)
    for col, (title, row) in zip((5, 7), (("teacher", ref), ("Hydra", hydra_row)), strict=True):
        ax = fig.add_subplot(grid[:, col])
        for name in names:
            ax.hist(
                np.maximum(row["epi"][name], floor),
                bins=bins,
                histtype="step",
                lw=1.5,
                label=labels[name],
            )
        aurocs = ", ".join(f"{k} {row[f'auroc_{k}']:.2f}" for k in OOD_SETS)
        ax.set(
            xscale="log", xlabel="epistemic uncertainty (nats)", title=f"{title}: AUROC {aurocs}"
        )
    fig.suptitle("digits as 8x8 images: CNN ensemble vs its Hydra student (split 0)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"saved {path}")


def run_tune(seeds, mode):
    """Hydra settings on inner validation splits; returns name -> rows (teacher first)."""
    results = {}
    for seed in seeds:
        X_tr, y_tr, X_va, y_va, sets = load(seed, inner=True)
        epochs = mode["teacher_epochs"] if mode else TEACHER["epochs"]
        start = time.perf_counter()
        members = train_teacher(X_tr, y_tr, seed, epochs)
        ref = evaluate(members, X_va, y_va, sets, None)
        ref["fit_s"] = time.perf_counter() - start
        results.setdefault("teacher", []).append(ref)
        for name, change in TUNE_VARIANTS.items():
            params = {**STUDENT, **change, **student_epochs(mode)}
            est, fit_s = fit_student(members, X_tr, seed, params)
            row = student_row(est, fit_s, X_va, y_va, sets, ref)
            results.setdefault(name, []).append(row)
            print(
                f"[tune split {seed}] {name}: acc {row['acc']:.3f} nll {row['nll']:.3f} "
                f"rho {row.get('rho', float('nan')):.3f} ({fit_s:.0f}s)",
                flush=True,
            )
    return results


def student_epochs(mode):
    """The small modes' epochs, or nothing (the settings' own)."""
    return dict(phase1_epochs=mode["phase1_epochs"], max_epochs=mode["max_epochs"]) if mode else {}


def settings_key(params):
    """The full settings of a student with ``params`` (defaults filled in), as a key."""
    full = {
        k: v for k, v in HydraDistilledClassifier(**params).get_params().items() if k != "ensemble"
    }
    return json.dumps(full, sort_keys=True, default=repr)


def tune_kd(X_tr, y_tr, seed, mode, schedules, temperatures):
    """KD's temperature and schedule by the NLL on a quarter of the training rows."""
    X_in, X_va, y_in, y_va = train_test_split(
        X_tr, y_tr, test_size=0.25, random_state=seed, stratify=y_tr
    )
    epochs = mode["teacher_epochs"] if mode else TEACHER["epochs"]
    members = train_teacher(X_in, y_in, seed, epochs)

    def nll(params):
        est, _ = fit_student(members, X_in, seed, params)
        return M.negative_log_likelihood(y_va, _normalised(est.predict_proba(X_va)))

    candidates = {
        name: {**STUDENT, **params}
        for name, params in _kd.grid(True, schedules, temperatures).items()
    }
    best, scores = _kd.select(candidates, nll)
    return best, scores, candidates[best]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="splits (seeds 0, 1, ...)")
    parser.add_argument("--quick", action="store_true", help="2 splits, short fits")
    parser.add_argument("--smoke", action="store_true", help="1 split, 1-2 epochs, seconds")
    parser.add_argument(
        "--tune", action="store_true", help="first compare student settings (2 inner splits)"
    )
    parser.add_argument(
        "--output",
        default=None,
        help="markdown report (default benchmarks/results/digits_cnn.md; none with "
        "--quick or --smoke)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = SMOKE if args.smoke else QUICK if args.quick else None
    repeats = mode["repeats"] if mode else args.repeats
    schedules = mode["schedules"] if mode else KD_SCHEDULES
    temperatures = mode["temperatures"] if mode else _kd.TEMPERATURES
    output = args.output
    if output is None and mode is None:
        output = str(Path(__file__).parent / "results" / "digits_cnn.md")
    t_all = time.perf_counter()

    tune_md, tuned = "", None
    if args.tune:
        t_tune = time.perf_counter()
        tune_seeds = mode["tune_seeds"] if mode else [100, 101]
        tuned = run_tune(tune_seeds, mode)
        tune_s = time.perf_counter() - t_tune
        tune_md = (
            f"## Choice of the student's settings (`--tune`, Hydra, {len(tune_seeds)} inner "
            f"validation split{'s' * (len(tune_seeds) > 1)}, mean ± s.e., {tune_s:.0f} s)\n\n"
            + table(tuned, MAIN_COLUMNS[:-1])
        )
        print("\n" + tune_md + "\n")

    t_main = time.perf_counter()
    results, choices = {}, []
    epochs = mode["teacher_epochs"] if mode else TEACHER["epochs"]
    for seed in range(repeats):
        X_tr, y_tr, X_te, y_te, sets = load(seed)
        start = time.perf_counter()
        members = train_teacher(X_tr, y_tr, seed, epochs)
        ref = evaluate(members, X_te, y_te, sets, None)
        ref["fit_s"] = time.perf_counter() - start
        results.setdefault(TEACHER_NAME, []).append(ref)
        best, scores, kd_params = tune_kd(X_tr, y_tr, seed, mode, schedules, temperatures)
        choices.append((best, scores))
        fitted = {}
        for name, params in (
            (KD_NAME, {**STUDENT, "n_heads": 1, **student_epochs(mode)}),
            (KD_TUNED, kd_params),
            (HYDRA_NAME, {**STUDENT, "n_heads": None, **student_epochs(mode)}),
        ):
            key = settings_key(params)
            if key not in fitted:  # the tuned KD may have chosen KD's settings: the same fit
                est, fit_s = fit_student(members, X_tr, seed, params)
                fitted[key] = student_row(est, fit_s, X_te, y_te, sets, ref)
                if output and seed == 0 and name == HYDRA_NAME:
                    save_plot(Path(output).with_suffix(".png"), ref, fitted[key], X_te, sets)
            row = fitted[key]
            results.setdefault(name, []).append(row)
            print(
                f"[split {seed}] {name}: acc {row['acc']:.3f} nll {row['nll']:.3f} "
                f"AUROC A {row['auroc_A']:.3f} ({row['fit_s']:.0f}s)",
                flush=True,
            )
    main_s = time.perf_counter() - t_main

    p = {name: rows[0]["params"] for name, rows in results.items()}
    teacher_p, kd_p, hydra_p = p[TEACHER_NAME], p[KD_NAME], p[HYDRA_NAME]
    params_md = (
        "## Parameters\n\n"
        "| teacher (5 CNNs) | one CNN | KD (1 head) | Hydra (5 heads) | Hydra / KD | "
        "Hydra / teacher |\n|---|---|---|---|---|---|\n"
        f"| {teacher_p} | {teacher_p // N_MEMBERS} | {kd_p} | {hydra_p} | "
        f"{hydra_p / kd_p:.3f} | {hydra_p / teacher_p:.3f} |\n\n"
        f"Each extra head adds {(hydra_p - kd_p) // (N_MEMBERS - 1)} parameters "
        f"(+{100 * (hydra_p / kd_p - 1):.1f}% over KD for {N_MEMBERS - 1} extra heads)."
    )
    kd_md = (
        "## KD's own temperature and schedule (validation NLL, a quarter of each training "
        "split, teacher retrained on the rest)\n\n"
        + _kd.tuning_table(choices)
        + "\n\nChosen per split: "
        + "; ".join(f"{i}: {best}" for i, (best, _) in enumerate(choices))
    )
    intro = (
        f"{repeats} split{'s' * (repeats > 1)}, mean ± s.e. In-domain: digits 0-7 (75/25 split "
        "per seed). OOD sets: " + "; ".join(OOD_NAMES.values()) + ". Time: comparison "
        f"{main_s:.0f} s" + (f", tuning {tune_s:.0f} s" if args.tune else "") + "."
    )
    body = "\n\n".join(
        part
        for part in (
            intro,
            "## Teacher vs KD vs Hydra (in-domain test split, OOD AUROC from epistemic "
            "uncertainty)\n\n" + table(results, MAIN_COLUMNS),
            "## Fidelity per set, and OOD AUROC from the total uncertainty\n\n"
            + table(results, DETAIL_COLUMNS),
            findings(results, tuned),
            params_md,
            kd_md,
            tune_md,
            NOTES,
        )
        if part
    )
    report = header(
        "Digits as 8x8 images: CNN ensemble → KD / Hydra",
        "benchmarks/digits_cnn.py",
        argv,
        f"splits {list(range(repeats))}"
        + (f", tuning splits {mode['tune_seeds'] if mode else [100, 101]}" if args.tune else ""),
        t_all,
        extra=[
            f"teacher epochs: {epochs}; students: {student_epochs(mode) or 'STUDENT settings'}",
            "KD grid: temperatures "
            + ", ".join(f"{t:g}" for t in temperatures)
            + "; schedules "
            + ", ".join(schedules),
        ],
    )
    report += "\n" + body
    print("\n" + report)
    if output:
        write_report(output, report)


if __name__ == "__main__":
    main()
