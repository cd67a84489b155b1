"""GPU check: fit on a CUDA GPU, compare with the CPU, and serve the GPU-fitted model on a CPU.

On a machine with a CUDA GPU, in well under 5 minutes (H100, 16 cores):

1. synthetic data (``make_classification`` and ``make_regression``, 200k rows,
   50 features; 10 classes) and a 50-tree forest teacher for each, fitted on
   20k rows (``min_samples_leaf=5``);
2. a ``HydraDistilledClassifier`` and a ``HydraDistilledRegressor`` fitted with
   the same ``random_state`` on ``device="cpu"`` and on ``device="cuda"``
   (default augmentation, so 400k transfer rows; ``phase1_epochs=1``,
   ``max_epochs=3``, two epochs of phase 2); the teacher's predictions are computed once
   and shared through ``cache=`` (a joblib cache), so the fits differ only in training;
3. epoch times from the skorch history (median of the phase-2 epochs, which
   include their validation pass), CPU versus GPU, and the classifier again on
   the GPU with ``precision="bfloat16"``;
4. checks, each printed PASS or FAIL with its numbers (tolerances in ``TOL``):

   * the GPU fits ran on the GPU (``device_``, the module's parameters);
   * CPU-fitted versus GPU-fitted models agree. They start from the same
     weights and see the same batches and validation rows, but float32
     kernels round differently, and a few thousand AdamW steps early in
     training amplify that: on the CPU, perturbing the inputs by one ulp
     gave, at 100k rows with this schedule, 98.8% label agreement, mean
     absolute probability difference 0.0022, and for the regressor mean
     absolute differences of 0.025 (means) and 0.008 (standard deviations) in
     units of std(y). So the checks are agreement bounds about 2-4x that
     floor (labels >= 95%, mean |dp| <= 0.01; regressor means <= 0.1 and
     standard deviations <= 0.05 of std(y)) plus parity of fidelity to the
     teacher, which a GPU-only bug in the data path or the loss would break
     (labels agreeing with the forest's within 0.02 of the CPU model's; the
     regressor's RMSE to the forest's mean at most 1.1x the CPU model's +
     0.01 std(y));
   * bfloat16 on the GPU trains to a model that agrees with the float32 one
     (labels >= 95%, mean |dp| <= 0.02, fidelity to the forest within 0.03):
     a looser bound, bfloat16 keeps 8 bits of mantissa;
   * each GPU-fitted model, pickled, loads and predicts in a subprocess with
     ``CUDA_VISIBLE_DEVICES=""`` (no GPU visible) on the CPU, with predictions
     equal to the GPU's up to float32 rounding: max absolute difference of
     ``predict_proba`` and of ``predict_uncertainty`` (nats) <= 1e-5, of the
     regressor's mean and standard deviation <= 1e-5 std(y). (Float32 versus
     float64 forward passes of such students differ by at most 2.4e-7 in
     ``predict_proba``, 5e-7 nats and 8e-7 of the standardised output.) Both
     the full model (which holds the forest) and ``without_teacher()``;
   * the whole run took under 300 s (GPU run only).

Exits with status 1 when a check fails. Without a GPU it prints a message and
exits 0, unless ``--cpu-standin`` is given: then ``device="cpu"`` stands in for
the GPU and the whole flow runs (on 20k rows unless ``--rows`` is given), to
test the script itself; the CPU-versus-"GPU" comparisons are then trivially
equal.

With ``--output`` the report (provenance first, then the checks and the
epoch times) is written as markdown.

    python benchmarks/gpu_check.py --output benchmarks/results/gpu_check.md  # CUDA machine
    python benchmarks/gpu_check.py --cpu-standin              # anywhere, a logic test
    python benchmarks/gpu_check.py --smoke --output /tmp/g.md # stand-in, tiny sizes, seconds
    python benchmarks/gpu_check.py --quick --output /tmp/g.md # the smallest real checks (GPU)
"""

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _provenance import header, write_report  # noqa: E402

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: Tolerances, see the module docstring for where they come from.
TOL = {
    # Same weights, predicted on the GPU and in a CUDA-hidden process (float32 rounding).
    "served_proba": 1e-5,  # max |dp|
    "served_uncertainty": 1e-5,  # max |d total, aleatoric, epistemic|, nats
    "served_regression": 1e-5,  # max |d mean|, max |d std|, / std(y)
    # CPU-fitted versus GPU-fitted (same seed, different kernels).
    "fit_labels": 0.95,  # label agreement, at least
    "fit_proba": 0.01,  # mean |dp|
    "fit_fidelity": 0.02,  # |difference| of the label agreement with the forest
    "fit_mean": 0.1,  # mean |d mean| / std(y)
    "fit_std": 0.05,  # mean |d std| / std(y)
    "fit_rmse": 1.1,  # GPU RMSE to the forest's mean at most this times the CPU's (+ 0.01 std(y))
    # bfloat16 versus float32, both on the GPU.
    "bf16_labels": 0.95,
    "bf16_proba": 0.02,
    "bf16_fidelity": 0.03,
}


#: Probability margin under which bfloat16 rounding may flip a label (8 bits of mantissa).
BF16_TIE = 0.01


class Checks:
    """PASS / FAIL lines, printed as they come."""

    def __init__(self):
        self.results = []
        self.details = []

    def add(self, name, ok, detail):
        self.results.append((name, bool(ok)))
        self.details.append(detail)
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    def error(self, name, exc):
        self.results.append((name, False))
        self.details.append(f"{type(exc).__name__}: {exc}")
        print(f"  [FAIL] {name}: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc(limit=4)

    def markdown(self):
        lines = ["| check | result | measured |", "|---|---|---|"]
        for (name, ok), detail in zip(self.results, self.details, strict=True):
            detail = detail.replace("|", "\\|")
            lines.append(f"| {name} | {'PASS' if ok else '**FAIL**'} | {detail} |")
        return "\n".join(lines)

    @property
    def failed(self):
        return [name for name, ok in self.results if not ok]


def epoch_times(model, phase1_epochs):
    """Median phase-2 epoch and the first epoch, seconds, from the skorch history."""
    durations = model.net_.history[:, "dur"]
    phase2 = durations[phase1_epochs:] or durations
    return float(np.median(phase2)), float(durations[0])


def model_device(model):
    return str(next(model.net_.module_.parameters()).device)


def classifier_outputs(model, X):
    return {
        "proba": model.predict_proba(X),
        "uncertainty": model.predict_uncertainty(X).to_numpy(),
    }


def regressor_outputs(model, X):
    mean, std = model.predict(X, return_std=True)
    return {"mean": mean, "std": std}


def child(paths):
    """In a CUDA-hidden process: unpickle each model, predict its rows, save the outputs."""
    models, X_path, out_path = paths[:-2], paths[-2], paths[-1]
    with np.load(X_path) as rows:
        Xs = [rows[f"X{i}"] for i in range(len(models))]
    saved = {"cuda_available": np.array(torch.cuda.is_available())}
    for i, (path, X) in enumerate(zip(models, Xs, strict=True)):
        with open(path, "rb") as f:
            with warnings.catch_warnings():
                # skorch warns that the CUDA-saved net is loaded on the CPU: expected here.
                warnings.simplefilter("ignore")
                model = pickle.load(f)
        outputs = (
            classifier_outputs(model, X)
            if isinstance(model, HydraDistilledClassifier)
            else regressor_outputs(model, X)
        )
        for key, value in outputs.items():
            saved[f"{i}_{key}"] = value
        saved[f"{i}_device"] = np.array(model_device(model))
    np.savez(out_path, **saved)


def predict_without_cuda(models, Xs, workdir):
    """Pickle ``models``, predict ``Xs[i]`` with model i in one subprocess that sees no GPU."""
    paths = []
    for i, model in enumerate(models):
        path = Path(workdir) / f"model{i}.pkl"
        with open(path, "wb") as f:
            pickle.dump(model, f)
        paths.append(str(path))
    X_path, out_path = Path(workdir) / "X.npz", Path(workdir) / "out.npz"
    np.savez(X_path, **{f"X{i}": X for i, X in enumerate(Xs)})
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *paths, str(X_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the CUDA-hidden subprocess failed:\n{proc.stderr[-3000:]}")
    with np.load(out_path) as saved:
        return {k: saved[k] for k in saved.files}


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def labels_agree(proba, labels):
    """Fraction of rows whose most probable class is ``labels``."""
    return float(np.mean(np.asarray(proba).argmax(1) == labels))


def mean_abs(a, b):
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check_served(checks, what, model, outputs, saved, index, scale):
    """Compare in-process predictions with those of the CUDA-hidden subprocess."""
    name = f"{what}: pickled, predicts with CUDA hidden"
    device = str(saved[f"{index}_device"])
    if isinstance(model, HydraDistilledClassifier):
        dp = max_abs(outputs["proba"], saved[f"{index}_proba"])
        du = max_abs(outputs["uncertainty"], saved[f"{index}_uncertainty"])
        ok = dp <= TOL["served_proba"] and du <= TOL["served_uncertainty"] and device == "cpu"
        detail = (
            f"loaded on {device}; max |dp| = {dp:.2e} (<= {TOL['served_proba']:g}), "
            f"max |d uncertainty| = {du:.2e} nats (<= {TOL['served_uncertainty']:g})"
        )
    else:
        dm = max_abs(outputs["mean"], saved[f"{index}_mean"]) / scale
        ds = max_abs(outputs["std"], saved[f"{index}_std"]) / scale
        tol = TOL["served_regression"]
        ok = dm <= tol and ds <= tol and device == "cpu"
        detail = (
            f"loaded on {device}; max |d mean| = {dm:.2e}, max |d std| = {ds:.2e} "
            f"(both / std(y), <= {tol:g})"
        )
    checks.add(name, ok, detail)


def fit_pair(checks, timings, estimator, teacher, X, y, gpu, params, label):
    """The same model fitted on the CPU and on the GPU; both, or None on error."""
    models = {}
    for where, device in (("CPU", "cpu"), ("GPU", gpu)):
        start = time.perf_counter()
        try:
            models[where] = estimator(teacher, device=device, **params).fit(X, y)
        except Exception as exc:
            checks.error(f"{label}: fit on the {where} ({device})", exc)
            return None
        epoch, first = epoch_times(models[where], params["phase1_epochs"])
        timings.append([label, where, "float32", time.perf_counter() - start, epoch, first])
    model = models["GPU"]
    found = (model.device_, model_device(model))
    checks.add(
        f"{label}: GPU fit ran on {gpu}",
        found[0] == gpu and found[1].split(":")[0] == gpu.split(":")[0],
        f"device_={found[0]!r}, module parameters on {found[1]}",
    )
    return models


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-standin",
        action="store_true",
        help="without a GPU, run the whole flow with device='cpu' as the 'GPU'",
    )
    parser.add_argument("--rows", type=int, default=None, help="200k (GPU) or 20k (stand-in)")
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--phase1-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of phase 2")
    parser.add_argument(
        "--quick", action="store_true", help="the smallest real checks: 20k rows, 10 trees"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="--cpu-standin on 2,000 rows, 5 trees, seconds"
    )
    parser.add_argument("--output", default=None, help="markdown report with provenance")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    args.student = {}
    if args.smoke:
        args.cpu_standin = True
        args.rows, args.trees, args.epochs = args.rows or 2000, 5, 1
        # Students trained enough that their labels mean something (one epoch leaves
        # them near uniform, and the float32 / bfloat16 comparison flips at random).
        args.phase1_epochs = max(args.phase1_epochs, 5)
        # n_jobs=1: starting worker processes would take longer than the predictions.
        args.student = {"body_layer_sizes": (16,), "batch_size": 256, "n_jobs": 1}
        torch.set_num_threads(1)  # tiny nets: a second thread only adds contention
    elif args.quick:
        args.rows, args.trees, args.epochs = args.rows or 20_000, 10, 1

    start = time.perf_counter()
    has_gpu = torch.cuda.is_available()
    if not has_gpu and not args.cpu_standin:
        print(
            "No CUDA GPU found (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}): nothing to check. Run this on a CUDA machine, or pass "
            "--cpu-standin to run the flow with device='cpu' standing in for the GPU."
        )
        return 0
    gpu = "cuda" if has_gpu else "cpu"
    rows = args.rows or (200_000 if has_gpu else 20_000)
    title = "skhydra GPU check" + ("" if has_gpu else " (CPU STAND-IN: device='cpu' as the GPU)")
    print("# " + title)
    if has_gpu:
        props = torch.cuda.get_device_properties(0)
        device = (
            f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB), "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        )
    else:
        device = "none (CPU stand-in)"
    n_fit = min(20_000, rows // 2)
    n_test = min(20_000, rows // 4)
    about = [
        f"device: {device}",
        f"TF32 matmul: {torch.backends.cuda.matmul.allow_tf32 if has_gpu else 'n/a'}",
        f"data: {rows} rows x 50 features (10 classes); {args.trees}-tree forests fitted on "
        f"{n_fit} rows; students: phase1_epochs={args.phase1_epochs}, "
        f"max_epochs={args.phase1_epochs + args.epochs}, augmentation 'noise' "
        f"({2 * rows} transfer rows); {n_test} held-out rows compared",
    ]
    print("\n".join(about) + "\n")
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="skhydra-gpu-check-") as workdir:
        status, body = run_checks(args, gpu, rows, n_fit, n_test, start, workdir)
    if args.output:
        report = header(
            title, "benchmarks/gpu_check.py", argv, "0 (data, forests, students)", start, about
        )
        write_report(args.output, report + "\n" + body)
    return status


def run_checks(args, gpu, rows, n_fit, n_test, start, workdir):
    """Fit, time and compare; print the report; the exit status."""
    has_gpu = gpu != "cpu"
    checks = Checks()
    timings = []
    served = []  # (what, GPU-fitted model, rows, its outputs on them, scale of y)
    params = dict(
        phase1_epochs=args.phase1_epochs,
        max_epochs=args.phase1_epochs + args.epochs,
        random_state=0,
        cache=os.path.join(workdir, "cache"),
        **{"n_jobs": -1, **args.student},
    )

    # -- classifier ------------------------------------------------------------
    print("classifier:", flush=True)
    X, y = make_classification(
        n_samples=rows + n_test, n_features=50, n_informative=20, n_classes=10, random_state=0
    )
    X = X.astype(np.float32)
    X, X_test = X[:rows], X[rows:]
    forest = RandomForestClassifier(
        n_estimators=args.trees, min_samples_leaf=5, n_jobs=-1, random_state=0
    ).fit(X[:n_fit], y[:n_fit])
    clf = fit_pair(
        checks, timings, HydraDistilledClassifier, forest, X, None, gpu, params, "classifier"
    )
    if clf is not None:
        cpu_out = classifier_outputs(clf["CPU"], X_test)
        gpu_out = classifier_outputs(clf["GPU"], X_test)
        teacher_labels = forest.predict_proba(X_test).argmax(1)
        fid_cpu = labels_agree(cpu_out["proba"], teacher_labels)
        fid_gpu = labels_agree(gpu_out["proba"], teacher_labels)
        agree = labels_agree(cpu_out["proba"], gpu_out["proba"].argmax(1))
        dp = mean_abs(cpu_out["proba"], gpu_out["proba"])
        checks.add(
            "classifier: CPU fit vs GPU fit agree",
            agree >= TOL["fit_labels"] and dp <= TOL["fit_proba"],
            f"label agreement {agree:.4f} (>= {TOL['fit_labels']}), mean |dp| {dp:.2e} "
            f"(<= {TOL['fit_proba']}), max |dp| {max_abs(cpu_out['proba'], gpu_out['proba']):.2e}, "
            "mean |d epistemic| "
            f"{mean_abs(cpu_out['uncertainty'][:, 2], gpu_out['uncertainty'][:, 2]):.2e} nats",
        )
        checks.add(
            "classifier: CPU fit and GPU fit equally faithful to the forest",
            abs(fid_gpu - fid_cpu) <= TOL["fit_fidelity"],
            f"labels agreeing with the forest's: CPU {fid_cpu:.4f}, GPU {fid_gpu:.4f} "
            f"(|difference| <= {TOL['fit_fidelity']})",
        )
        try:
            t0 = time.perf_counter()
            bf16 = HydraDistilledClassifier(forest, device=gpu, precision="bfloat16", **params).fit(
                X
            )
            epoch, first = epoch_times(bf16, args.phase1_epochs)
            timings.append(
                ["classifier", "GPU", "bfloat16", time.perf_counter() - t0, epoch, first]
            )
            bf_out = classifier_outputs(bf16, X_test)
            # Labels compared where float32's top two classes differ by more than
            # bfloat16's resolution: elsewhere a rounding flips a tie (a barely trained
            # student's near-uniform rows).
            top2 = np.sort(gpu_out["proba"], axis=1)[:, -2:]
            decided = top2[:, 1] - top2[:, 0] > BF16_TIE
            agree = labels_agree(bf_out["proba"][decided], gpu_out["proba"].argmax(1)[decided])
            dp = mean_abs(bf_out["proba"], gpu_out["proba"])
            fid_bf16 = labels_agree(bf_out["proba"], teacher_labels)
            finite = bool(np.isfinite(bf_out["proba"]).all())
            checks.add(
                "classifier: bfloat16 on the GPU vs float32 on the GPU",
                finite
                and agree >= TOL["bf16_labels"]
                and dp <= TOL["bf16_proba"]
                and abs(fid_bf16 - fid_gpu) <= TOL["bf16_fidelity"],
                f"finite {finite}, label agreement {agree:.4f} (>= {TOL['bf16_labels']}) on the "
                f"{decided.sum()} of {len(decided)} rows whose float32 top-two margin exceeds "
                f"{BF16_TIE}, "
                f"mean |dp| {dp:.2e} (<= {TOL['bf16_proba']}), labels agreeing with the "
                f"forest's {fid_bf16:.4f} vs float32 {fid_gpu:.4f} (|difference| <= "
                f"{TOL['bf16_fidelity']})",
            )
        except Exception as exc:
            checks.error("classifier: bfloat16 on the GPU", exc)
        # Served at the end, with the regressors: one CUDA-hidden process for all four.
        served.append(("classifier", clf["GPU"], X_test, gpu_out, 1.0))
        served.append(
            ("classifier without_teacher()", clf["GPU"].without_teacher(), X_test, gpu_out, 1.0)
        )

    # -- regressor ---------------------------------------------------------------
    print("regressor:", flush=True)
    X, y = make_regression(
        n_samples=rows + n_test, n_features=50, n_informative=20, noise=10.0, random_state=0
    )
    X = X.astype(np.float32)
    X, X_test, y = X[:rows], X[rows:], y[:rows]
    scale = float(np.std(y))
    forest = RandomForestRegressor(
        n_estimators=args.trees, min_samples_leaf=5, max_features=0.3, n_jobs=-1, random_state=0
    ).fit(X[:n_fit], y[:n_fit])
    reg = fit_pair(checks, timings, HydraDistilledRegressor, forest, X, y, gpu, params, "regressor")
    if reg is not None:
        cpu_out = regressor_outputs(reg["CPU"], X_test)
        gpu_out = regressor_outputs(reg["GPU"], X_test)
        dm = mean_abs(cpu_out["mean"], gpu_out["mean"]) / scale
        ds = mean_abs(cpu_out["std"], gpu_out["std"]) / scale
        checks.add(
            "regressor: CPU fit vs GPU fit agree",
            dm <= TOL["fit_mean"] and ds <= TOL["fit_std"],
            f"mean |d mean| {dm:.2e} (<= {TOL['fit_mean']}), mean |d std| {ds:.2e} "
            f"(<= {TOL['fit_std']}), both / std(y) = {scale:.1f}",
        )
        teacher_mean = forest.predict(X_test)
        rmse_cpu = float(np.sqrt(np.mean((cpu_out["mean"] - teacher_mean) ** 2))) / scale
        rmse_gpu = float(np.sqrt(np.mean((gpu_out["mean"] - teacher_mean) ** 2))) / scale
        checks.add(
            "regressor: CPU fit and GPU fit equally faithful to the forest",
            rmse_gpu <= TOL["fit_rmse"] * rmse_cpu + 0.01,
            f"RMSE to the forest's mean / std(y): CPU {rmse_cpu:.4f}, GPU {rmse_gpu:.4f} "
            f"(GPU <= {TOL['fit_rmse']} x CPU + 0.01)",
        )
        served.append(("regressor", reg["GPU"], X_test, gpu_out, scale))
        served.append(
            ("regressor without_teacher()", reg["GPU"].without_teacher(), X_test, gpu_out, scale)
        )

    # -- served with CUDA hidden ---------------------------------------------------
    if served:
        print("pickled, predicted in a process with CUDA hidden:", flush=True)
        try:
            saved = predict_without_cuda(
                [m for _, m, _, _, _ in served], [x for _, _, x, _, _ in served], workdir
            )
            for i, (what, model, _, outputs, scale) in enumerate(served):
                check_served(checks, what, model, outputs, saved, i, scale)
        except Exception as exc:
            checks.error("pickled models predict with CUDA hidden", exc)

    # -- report --------------------------------------------------------------------
    epochs_md = [
        "| model | where | precision | fit s | epoch s | first epoch s | CPU epoch / this |",
        "|---|---|---|---|---|---|---|",
    ]
    print(
        "\nepoch times (skorch history 'dur', phase-2 median; the first epoch also moves the data; "
        "the first fit of each model also computes the teacher's predictions, cached for the "
        "others):"
    )
    print(
        f"  {'model':<11} {'where':<4} {'precision':<9} {'fit s':>7} {'epoch s':>8} {'1st epoch s':>11}"
    )
    base = {}
    for model, where, precision, fit_s, epoch, first in timings:
        base.setdefault((model, "CPU"), epoch if where == "CPU" else None)
        ref = base.get((model, "CPU"))
        speed = f"  CPU/this {ref / epoch:.1f}x" if ref and where != "CPU" else ""
        epochs_md.append(
            f"| {model} | {where} | {precision} | {fit_s:.1f} | {epoch:.2f} | {first:.2f} | "
            f"{speed.strip().removeprefix('CPU/this ') or '–'} |"
        )
        print(
            f"  {model:<11} {where:<4} {precision:<9} {fit_s:7.1f} {epoch:8.2f} {first:11.2f}{speed}"
        )
    total = time.perf_counter() - start
    if has_gpu:
        checks.add("the whole check runs in under 300 s", total < 300, f"{total:.0f} s")
    failed = checks.failed
    summary = f"{len(checks.results) - len(failed)}/{len(checks.results)} checks passed in " + (
        f"{total:.0f} s" + (f"; FAILED: {'; '.join(failed)}" if failed else "")
    )
    print("\n" + summary)
    body = "\n\n".join(
        [
            summary + ".",
            "## Checks\n\n" + checks.markdown(),
            "## Epoch times\n\nskorch history 'dur', phase-2 median; the first epoch also moves "
            "the data; the first fit of each model also computes the teacher's predictions, "
            "cached for the others.\n\n" + "\n".join(epochs_md),
        ]
    )
    return (1 if failed else 0), body


if __name__ == "__main__":
    sys.exit(main())
