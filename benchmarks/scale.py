"""Scale benchmark: a 1M-row fit with bounded memory, and prediction throughput, on the CPU.

Synthetic data (``make_classification``, 1M rows, 50 features, 20 informative,
10 classes). Teacher: a 200-tree ``RandomForestClassifier``
(``min_samples_leaf=5``) fitted with ``n_jobs=2`` on a subsample of 50k rows.
The forest's own fit is *not* what is measured: it only has to be a realistic
teacher (trees of the size a 50k-row fit gives) that labels the million
transfer rows; fitting it on all rows would take most of the run.

Each student configuration is fitted in its own subprocess, so its peak
resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``) is its own:

* ``budget``: ``memory_budget="2GB"`` (the default), ``augmentation=None``, so
  the transfer set is exactly the 1M rows: the teacher's 200 x 10 class
  probabilities of a million rows (8 GB of float32 head targets) go to
  temporary files read batch by batch;
* ``none``: the same with ``memory_budget=None`` (everything in RAM);
* ``budget-aug``: ``memory_budget="2GB"`` with the default ``"noise"``
  augmentation (1M synthetic rows on top: 2M transfer rows, 16 GB of targets);
* ``budget-mmap``: ``budget`` run with glibc's ``MALLOC_MMAP_THRESHOLD_=1048576``
  (buffers over 1 MiB are mapped and given back when freed): it tells what of
  the training-time growth of ``budget`` is memory the allocator keeps.

The student keeps its defaults except a short training budget
(``phase1_epochs=1``, ``max_epochs=2``: one epoch per phase; early stopping stays on), ``device="cpu"``,
``n_jobs=2`` (members predict on both cores) and ``random_state=0``. Torch
trains with ``--threads`` threads, 1 by default: on this shared 2-core machine,
two OpenMP threads competing with other jobs made a training step 6-8x slower
than one thread. Reported per configuration: the resident memory after loading
the data and the forest (the baseline), the peak over the whole fit, the peaks
before and during training and the resident memory at each phase's start and
end (a sampling thread reading ``/proc/self/statm`` every 0.1 s), the bytes of
head targets held in RAM and on disk (read from skhydra's ``RowStore``,
observed without changing it), and the fit's wall time split into teacher
predictions and targets (fit start to the start of phase 1, seen by a skorch
callback) and each training phase.

The subprocess of the first configuration then times prediction on
``--throughput-rows`` rows (default 100k), round-robin, median of
``--repeats``: the student's ``predict_uncertainty`` (torch with 1 and 2
threads), ``predict_proba``, its torch module alone and its numpy
decomposition alone, versus every member's prediction
(``skhydra.ensembles.predict_members``, the work the forest must do to give
its uncertainty) with ``n_jobs=1`` and ``n_jobs=2``, and the forest's own
``predict_proba``. The throughput target is judged at equal cores.

    python benchmarks/scale.py                  # full run, 33 min on 2 shared cores
    python benchmarks/scale.py --quick          # 50k rows, 20 trees, under a minute
    python benchmarks/scale.py --smoke --output /tmp/s.md   # 2k rows, 5 trees, one config
    python benchmarks/scale.py --report-only    # rewrite the report from saved results

The full run (without ``--quick``) writes ``benchmarks/results/scale.md``.
Data, forest and per-configuration logs go to ``--workdir`` (reused when the
data and forest settings match).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

GB = 1e9
HERE = Path(__file__).resolve().parent
#: name: (memory_budget on (``--budget``) or None, augmentation, extra environment)
CONFIGS = {
    "budget": (True, None, {}),
    "none": (False, None, {}),
    "budget-aug": (True, "noise", {}),
    # glibc's malloc with a fixed mmap threshold: buffers over 1 MiB are returned on free.
    "budget-mmap": (True, None, {"MALLOC_MMAP_THRESHOLD_": "1048576"}),
}


def peak_rss():
    """Peak resident memory of this process so far, bytes (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss():
    """Resident memory of this process now, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RSSSampler(threading.Thread):
    """Sample the resident memory every ``interval`` seconds, with timestamps."""

    def __init__(self, interval=0.1):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter(), current_rss()))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()

    def peak(self, start=-np.inf, stop=np.inf):
        values = [rss for t, rss in self.samples if start <= t < stop]
        return max(values) if values else float("nan")


def memory_note():
    """The machine's RAM (the provenance block gives the rest of the machine)."""
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        mem = float("nan")
    return f"{platform.system()} {platform.machine()}, {mem / 2**30:.1f} GiB RAM"


def print_table(out, header, rows):
    out("| " + " | ".join(header) + " |")
    out("|---" * len(header) + "|")
    for row in rows:
        out("| " + " | ".join(str(c) for c in row) + " |")
    out()


# -- data and forest (parent process) ------------------------------------------


def prepare(args, out):
    """Make (or reuse) the data and the fitted forest in ``args.workdir``."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = {
        "rows": args.rows,
        "features": args.features,
        "informative": args.informative,
        "classes": args.classes,
        "trees": args.trees,
        "forest_rows": args.forest_rows,
        "min_samples_leaf": args.min_samples_leaf,
    }
    meta_path = workdir / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text())["settings"] == settings:
        meta = json.loads(meta_path.read_text())
        out(f"Reusing the data and forest in {workdir}.", file=sys.stderr)
        return meta
    start = time.perf_counter()
    X, y = make_classification(
        n_samples=args.rows,
        n_features=args.features,
        n_informative=args.informative,
        n_redundant=min(10, args.features - args.informative),
        n_classes=args.classes,
        random_state=0,
    )
    X = X.astype(np.float32)
    np.save(workdir / "X.npy", X)
    data_s = time.perf_counter() - start
    # make_classification shuffles its rows: the first forest_rows are a random subsample.
    n = min(args.forest_rows, args.rows)
    start = time.perf_counter()
    forest = RandomForestClassifier(
        n_estimators=args.trees,
        min_samples_leaf=args.min_samples_leaf,
        n_jobs=2,
        random_state=0,
    ).fit(X[:n], y[:n])
    forest_s = time.perf_counter() - start
    forest_path = workdir / "forest.joblib"
    joblib.dump(forest, forest_path)
    test = slice(n, min(n + 50_000, args.rows))
    meta = {
        "settings": settings,
        "data_s": data_s,
        "forest_s": forest_s,
        "forest_rows": n,
        "forest_nodes": int(sum(t.tree_.node_count for t in forest.estimators_)),
        "forest_depth": float(np.mean([t.tree_.max_depth for t in forest.estimators_])),
        "forest_bytes": forest_path.stat().st_size,
        "forest_accuracy": float(forest.score(X[test], y[test])),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def run_worker(args, name, throughput):
    """Fit configuration ``name`` in a fresh Python process; its result dict."""
    workdir = Path(args.workdir)
    result_path = workdir / f"result-{name}.json"
    log_path = workdir / f"{name}.log"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--workdir",
        str(workdir),
        "--phase1-epochs",
        str(args.phase1_epochs),
        "--epochs",
        str(args.epochs),
        "--n-jobs",
        str(args.n_jobs),
        "--budget",
        args.budget,
        "--threads",
        str(args.threads or 0),
        "--throughput-rows",
        str(args.throughput_rows if throughput else 0),
        "--repeats",
        str(args.repeats),
    ]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=args.timeout,
                env=dict(os.environ, **CONFIGS[name][2]),
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.perf_counter() - start
    if rc == 0 and result_path.exists():
        return json.loads(result_path.read_text())
    tail = log_path.read_text().strip().splitlines()[-5:]
    reason = {-9: "killed by SIGKILL (out of memory?)"}.get(rc, f"exit status {rc}")
    return {"name": name, "failed": f"{reason} after {wall:.0f} s", "log_tail": tail}


# -- one configuration (worker process) ------------------------------------------

EVENTS = []


def worker(args):
    import joblib
    import torch
    from skorch.callbacks import Callback

    import skhydra._base
    from skhydra import HydraDistilledClassifier
    from skhydra._storage import RowStore

    warnings.filterwarnings("ignore")
    name = args.worker
    workdir = Path(args.workdir)
    store_stats = {}

    class ObservedRowStore(RowStore):
        """skhydra's RowStore, recording where the arrays went when it is closed."""

        def close(self):
            store_stats.update(in_memory=self.in_memory, on_disk=self.on_disk)
            super().close()

    # Observation only: the same class, plus a record of its byte counts.
    skhydra._base.RowStore = ObservedRowStore

    class Phases(Callback):
        """Timestamps of each training phase's start and end (written to EVENTS)."""

        def on_train_begin(self, net, X=None, y=None, **kwargs):
            EVENTS.append(("begin", time.perf_counter()))

        def on_train_end(self, net, X=None, y=None, **kwargs):
            EVENTS.append(("end", time.perf_counter()))

    imports_rss = current_rss()
    X = np.load(workdir / "X.npy")
    forest = joblib.load(workdir / "forest.joblib")
    baseline_rss, baseline_peak = current_rss(), peak_rss()
    if args.threads:
        torch.set_num_threads(args.threads)
    budget_on, augmentation, env = CONFIGS[name]
    config = {"memory_budget": args.budget if budget_on else None, "augmentation": augmentation}
    student = HydraDistilledClassifier(
        forest,
        phase1_epochs=args.phase1_epochs,
        max_epochs=args.phase1_epochs + args.epochs,
        device="cpu",
        n_jobs=args.n_jobs,
        random_state=0,
        callbacks=[("phases", Phases())],
        **config,
    )
    sampler = RSSSampler()
    sampler.start()
    start = time.perf_counter()
    student.fit(X)
    fit_s = time.perf_counter() - start
    fit_peak = peak_rss()
    sampler.stop()
    begins = [t for kind, t in EVENTS if kind == "begin"]
    ends = [t for kind, t in EVENTS if kind == "end"]
    history = student.net_.history
    result = {
        "name": name,
        "config": config,
        "env": env,
        "rows": len(X),
        "transfer_rows": len(X) * (2 if config["augmentation"] else 1),
        "heads": student.n_heads_,
        "imports_rss": imports_rss,
        "baseline_rss": baseline_rss,
        "baseline_peak": baseline_peak,
        "fit_peak": fit_peak,
        "sampled_before_training": sampler.peak(stop=begins[0]),
        "sampled_training": sampler.peak(start=begins[0]),
        "store": store_stats,
        "fit_s": fit_s,
        "teacher_s": begins[0] - start,
        "phase_s": [b - a for a, b in zip(begins, ends, strict=True)],
        # Resident memory at each phase's start and end (nearest sample).
        "phase_rss": [
            [sampler.peak(t - 0.25, t + 0.25) for t in pair]
            for pair in zip(begins, ends, strict=True)
        ],
        "epoch_dur": [float(d) for d in history[:, "dur"]],
        "train_loss": [float(v) for v in history[:, "train_loss"]],
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1), flush=True)
    if args.throughput_rows:
        result["throughput"] = throughput(student, forest, X[: args.throughput_rows], args)
    (workdir / f"result-{name}.json").write_text(json.dumps(result, indent=1))


def module_forward(student, X, chunk=4096):
    """The student's torch module alone (no validation, skorch nor numpy post-processing)."""
    import torch

    module = student.net_.module_
    with torch.no_grad():
        return [module(torch.from_numpy(X[i : i + chunk])) for i in range(0, len(X), chunk)]


def throughput(student, forest, X, args):
    """Round-robin timings of student and forest prediction on the same rows."""
    import torch

    from skhydra.ensembles import predict_members
    from skhydra.uncertainty import classification_uncertainty

    X = np.ascontiguousarray(X)
    student.predict_uncertainty(X[:1000])  # warm-up, untimed
    predict_members(forest, X[:1000])
    heads = student.predict_members(X)

    def with_threads(n, fn):
        def run():
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                return fn()
            finally:
                torch.set_num_threads(before)

        return run

    def forest_proba(n_jobs):
        return forest.set_params(n_jobs=n_jobs).predict_proba(X)

    jobs = {
        "student predict_uncertainty (torch 1 thread)": with_threads(
            1, lambda: student.predict_uncertainty(X)
        ),
        "student predict_uncertainty (torch 2 threads)": with_threads(
            2, lambda: student.predict_uncertainty(X)
        ),
        "student predict_proba (torch 1 thread)": with_threads(1, lambda: student.predict_proba(X)),
        "student module forward only (torch 1 thread)": with_threads(
            1, lambda: module_forward(student, X)
        ),
        "student decomposition only (numpy, on the heads)": lambda: classification_uncertainty(
            heads, student.head_weights_
        ),
        "forest predict_members (n_jobs=1)": lambda: predict_members(forest, X, n_jobs=1),
        "forest predict_members (n_jobs=2)": lambda: predict_members(forest, X, n_jobs=2),
        "forest predict_proba (n_jobs=1)": lambda: forest_proba(1),
        "forest predict_proba (n_jobs=2)": lambda: forest_proba(2),
    }
    times = {name: [] for name in jobs}
    for _ in range(args.repeats):
        for name, fn in jobs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    return {"rows": len(X), "times": times}


# -- report (parent process) -----------------------------------------------------


def gb(value):
    return "-" if value is None or value != value else f"{value / GB:.2f}"


def report(args, meta, results, out):
    forest_desc = (
        f"RandomForestClassifier(n_estimators={args.trees}, "
        f"min_samples_leaf={args.min_samples_leaf}, n_jobs=2, random_state=0)"
    )
    out(
        f"Teacher: `{forest_desc}` fitted on {meta['forest_rows']} rows in "
        f"{meta['forest_s']:.0f} s (not part of the measurement); {meta['forest_nodes']} "
        f"nodes, mean depth {meta['forest_depth']:.1f}, {meta['forest_bytes'] / 1e6:.0f} MB "
        f"as a joblib file, accuracy {meta['forest_accuracy']:.3f} on "
        f"{min(meta['forest_rows'] + 50_000, meta['settings']['rows']) - meta['forest_rows']} "
        "held-out rows.\n"
    )
    out(
        f"Student: `HydraDistilledClassifier(forest, phase1_epochs={args.phase1_epochs}, "
        f"max_epochs={args.phase1_epochs + args.epochs}, device='cpu', n_jobs={args.n_jobs}, random_state=0, "
        f"memory_budget=..., augmentation=...)`, torch threads {args.threads or 'default'}, "
        "other parameters at their defaults "
        "(body (256, 256), one linear head per tree, batch 256, early stopping with 10% "
        "held out).\n"
    )
    out("## Fit: peak resident memory and wall time, one subprocess per configuration\n")
    rows, failed = [], []
    for r in results:
        if "failed" in r:
            failed.append(r)
            rows.append([r["name"], "failed: " + r["failed"]] + ["-"] * 12)
            continue
        c, s = r["config"], r["store"]
        env = " ".join(f"{k}={v}" for k, v in r.get("env", {}).items())
        rss = [gb(v) for pair in r["phase_rss"] for v in pair]
        rows.append(
            [
                r["name"],
                repr(c["memory_budget"]) + (f" ({env})" if env else ""),
                repr(c["augmentation"]),
                r["transfer_rows"],
                f"{gb(s.get('in_memory'))} / {gb(s.get('on_disk'))}",
                gb(r["baseline_rss"]),
                f"**{gb(r['fit_peak'])}**",
                gb(r["sampled_before_training"]),
                gb(r["sampled_training"]),
                " / ".join(rss),
                f"{r['fit_s']:.0f}",
                f"{r['teacher_s']:.0f}",
                " + ".join(f"{p:.0f}" for p in r["phase_s"]),
                f"{r['train_loss'][-1]:.4f}",
            ]
        )
    print_table(
        out,
        [
            "config",
            "memory_budget",
            "augmentation",
            "transfer rows",
            "targets in RAM / on disk GB",
            "RSS after loading data + forest GB",
            "peak RSS of the fit GB (ru_maxrss)",
            "sampled peak before training GB",
            "sampled peak while training GB",
            "RSS at phase 1 start / end, phase 2 start / end GB",
            "fit s",
            "teacher predictions + targets s",
            "phase 1 + phase 2 s",
            "last train loss",
        ],
        rows,
    )
    for r in failed:
        out(f"`{r['name']}` failed ({r['failed']}); last lines of its log:\n")
        out("```\n" + "\n".join(r["log_tail"]) + "\n```\n")
    out(
        "GB = 10^9 bytes. Peak RSS is the process's whole peak (Python, torch, data, forest, "
        "targets); the sampled peaks (every 0.1 s) can miss short spikes. Teacher predictions "
        "+ targets: from the start of `fit` to the start of phase 1 (input checks, the "
        "forest's predictions of every transfer row, tempered head targets written to the "
        "store); phases: skorch's `on_train_begin` to `on_train_end` (epochs with their "
        "validation pass).\n"
    )

    by_name = {r["name"]: r for r in results if "failed" not in r}
    lines = []
    for r in by_name.values():
        (p1_start, _), (p2_start, p2_end) = r["phase_rss"][0], r["phase_rss"][-1]
        lines.append(
            f"* `{r['name']}`: {gb(r['fit_peak'] - r['baseline_rss'])} GB over the baseline at "
            f"the peak; {gb(p1_start - r['baseline_rss'])} GB over it when training starts; "
            f"phase 2 (one epoch, {r['transfer_rows'] * 0.9 / 256:.0f} batches) grows the "
            f"resident memory by {gb(p2_end - p2_start)} GB"
        )
    if by_name:
        load_peak = max(r["baseline_peak"] for r in by_name.values())
        lines.append(
            f"* loading the data and the forest alone peaks at {gb(load_peak)} GB (ru_maxrss "
            "counts from the process start), so a fit peak at that value means the fit stayed "
            "below it"
        )
    if "budget" in by_name and "budget-mmap" in by_name:
        grow = [
            r["phase_rss"][-1][1] - r["phase_rss"][-1][0]
            for r in (by_name["budget"], by_name["budget-mmap"])
        ]
        kept = grow[0] > 0.1 * GB and grow[0] > 2 * grow[1]
        lines.append(
            f"* the same fit with `MALLOC_MMAP_THRESHOLD_=1048576` grows by {gb(grow[1])} GB in "
            f"phase 2 instead of {gb(grow[0])} GB"
            + (
                ": that growth is freed memory glibc's allocator keeps, not live data"
                if kept
                else ""
            )
        )
    if "budget" in by_name and "none" in by_name:
        saved = by_name["none"]["fit_peak"] - by_name["budget"]["fit_peak"]
        lines.append(
            f"* the budget lowers the peak by {gb(saved)} GB "
            f"({by_name['none']['fit_peak'] / by_name['budget']['fit_peak']:.1f}x)"
        )
    if lines:
        out("Where the memory goes (GB):\n")
        out("\n".join(lines) + "\n")

    tp = next((r["throughput"] for r in results if "throughput" in r), None)
    targets = []
    if "budget" in by_name:
        peak = by_name["budget"]["fit_peak"]
        targets.append(
            [
                f"peak RSS of the {args.rows}-row fit with memory_budget={args.budget!r} < 6 GB",
                f"{gb(peak)} GB",
                peak < 6 * GB,
            ]
        )
    if tp is not None:
        n = tp["rows"]
        med = {k: float(np.median(v)) for k, v in tp["times"].items()}
        ref = med["student predict_uncertainty (torch 1 thread)"]
        out(
            f"## Prediction throughput on {n} rows (one process, round-robin, median of "
            f"{args.repeats})\n"
        )
        rows = []
        for k, v in tp["times"].items():
            who, call = k.split(" ", 1)
            rows.append(
                [
                    who,
                    call,
                    f"{med[k]:.2f}",
                    f"{min(v):.2f}-{max(v):.2f}",
                    f"{n / med[k]:,.0f}",
                    f"{med[k] / ref:.2f}",
                ]
            )
        print_table(
            out,
            [
                "",
                "call",
                "median s",
                "min-max s",
                "rows/s",
                "time / student predict_uncertainty (1 thread)",
            ],
            rows,
        )
        out(
            "`forest predict_members` is every tree's class probabilities "
            "(`skhydra.ensembles.predict_members`, n_jobs threads over the trees): the work the "
            "forest does to give its uncertainty. The student's calls run with the torch "
            "threads shown; `predict_uncertainty` decomposes the heads in torch, by blocks of "
            "rows. `decomposition only (numpy, on the heads)` is "
            "`skhydra.uncertainty.classification_uncertainty` on precomputed head "
            "probabilities, for reference.\n"
        )
        for cores in (1, 2):
            student_s = med[
                f"student predict_uncertainty (torch {cores} thread{'s' * (cores > 1)})"
            ]
            ratio = med[f"forest predict_members (n_jobs={cores})"] / student_s
            targets.append(
                [
                    "student predict_uncertainty >= 2x the rows/s of the forest's per-member "
                    f"prediction, {cores} core{'s' * (cores > 1)} each",
                    f"{ratio:.2f}x",
                    ratio >= 2.0,
                ]
            )
    if targets:
        out("## Targets\n")
        print_table(
            out,
            ["target", "measured", "met"],
            [[t, m, "yes" if ok else "NO"] for t, m, ok in targets],
        )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="transfer rows")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--informative", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--forest-rows", type=int, default=50_000, help="rows fitting the forest")
    parser.add_argument("--min-samples-leaf", type=int, default=5)
    parser.add_argument("--phase1-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1, help="epochs of phase 2")
    parser.add_argument("--n-jobs", type=int, default=2, help="the student's n_jobs")
    parser.add_argument("--budget", default="2GB", help="memory_budget of the budget configs")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the fits (0: torch's default); 1 by default, see the docstring",
    )
    parser.add_argument(
        "--configs",
        default="budget,none,budget-aug,budget-mmap",
        help=f"comma-separated, among {', '.join(CONFIGS)}",
    )
    parser.add_argument("--throughput-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="timings per call (median)")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per config")
    parser.add_argument("--workdir", default=None, help="data, forest and logs")
    parser.add_argument("--output", default=None, help="markdown report (full run: results/)")
    parser.add_argument("--quick", action="store_true", help="50k rows, 20 trees, 5k rows timed")
    parser.add_argument(
        "--smoke", action="store_true", help="2k rows, 5 trees, 500 rows timed, first config"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the results already in --workdir (no fitting)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.smoke:
        args.rows, args.trees, args.forest_rows, args.repeats = 2_000, 5, 1_000, 1
        args.n_jobs = 1  # starting worker processes would take longer than the predictions
        args.throughput_rows = min(args.throughput_rows, 500)
        args.configs = args.configs.split(",")[0]
    elif args.quick:
        args.rows, args.trees, args.forest_rows = 50_000, 20, 10_000
        args.throughput_rows = min(args.throughput_rows, 5_000)
    if args.workdir is None:
        args.workdir = f"/tmp/skhydra-scale-{args.rows}-{args.trees}"
    output = args.output
    if output is None and not (args.quick or args.smoke):
        output = HERE / "results" / "scale.md"
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; choose among {list(CONFIGS)}")

    lines = []

    def out(text="", file=None):
        print(text, file=file or sys.stdout, flush=True)
        if file is None:
            lines.append(text)

    total = time.perf_counter()
    from _provenance import COMMIT, DIRTY, header

    commit = f"{COMMIT}{' (with uncommitted changes)' if DIRTY else ''}"
    run_path = Path(args.workdir) / "run.json"
    notes = [f"memory: {memory_note()}"]
    if args.report_only:
        measured = json.loads(run_path.read_text()).get("commit", "unknown (not recorded)")
        notes.append(
            f"written from saved results: the measurements were made at commit {measured} by "
            f"the same command without --report-only"
        )
    if args.report_only:
        meta = json.loads((Path(args.workdir) / "meta.json").read_text())
        results = [
            json.loads((Path(args.workdir) / f"result-{name}.json").read_text()) for name in names
        ]
    else:
        meta = prepare(args, out)
        results = []
        for i, name in enumerate(names):
            print(f"[{time.perf_counter() - total:.0f} s] fitting config {name}", file=sys.stderr)
            results.append(run_worker(args, name, throughput=i == 0))
            print(json.dumps(results[-1], indent=1)[:2000], file=sys.stderr, flush=True)
    if not args.report_only:
        run_path.write_text(json.dumps({"total_s": time.perf_counter() - total, "commit": commit}))
    body = []

    def report_line(text="", file=None):
        if file is None:
            body.append(text)

    report(args, meta, results, report_line)
    total_s = json.loads(run_path.read_text())["total_s"] if run_path.exists() else None
    if total_s is not None:
        notes.append(f"total benchmark time (fits and measurements): {total_s:.0f} s")
    title = (
        f"Scale benchmark: {args.rows} rows x {args.features} features, {args.classes} "
        f"classes, {args.trees}-tree forest"
    )
    text = header(title, "benchmarks/scale.py", argv, "0 (data, forest, student)", total, notes)
    text += "\nShared with other jobs, so timings are noisy.\n\n" + "\n".join(body)
    print(text)
    if output is not None:
        from _provenance import write_report

        write_report(output, text)


if __name__ == "__main__":
    main()
