"""Cost benchmark: the Hydra student versus the ensemble it distils, on the CPU.

Synthetic data (``make_classification``, 100k rows, 20 features, 3 classes;
``make_regression`` for one regression row). Teachers:

* a 100-tree ``RandomForestClassifier`` fitted on every row (with
  ``n_jobs=2`` to keep the run short; its prediction is timed with
  ``n_jobs=1`` and ``n_jobs=2``);
* 5 ``MLPClassifier(hidden_layer_sizes=(256, 256))`` (and 5 ``MLPRegressor``)
  fitted on a subset with few iterations: their fit quality does not matter
  for cost, only their size and the work of predicting.

Each teacher is distilled into the estimator with default settings except a
short budget (few epochs, a subset as transfer set). Measured, side by side:

1. prediction time on all rows: every member's prediction
   (``skhydra.ensembles.predict_members``), the ensemble's own prediction and
   ``skhydra.predict_uncertainty`` of the teacher, versus the student's
   ``predict_proba``, ``predict_members`` and ``predict_uncertainty``;
2. pickled size of the teachers, of the full student (which holds the
   teacher) and of ``student.without_teacher()``;
3. parameter count of Hydra versus KD (``n_heads=1``) for the same body;
4. phase-2 epoch time versus the number of heads at a fixed body.

Every timing is repeated (round-robin, so slow phases of a busy machine hit
every contender) and the median is reported with the min-max range. Torch,
BLAS and OpenMP are limited to ``--threads`` threads (default 1), so the
scikit-learn MLPs and the torch student use the same number of cores; the
forest's own ``n_jobs`` is separate.

    python benchmarks/cost.py                # full run, about 3-5 min on 2 cores
    python benchmarks/cost.py --rows 10000   # quick run
"""

import argparse
import pickle
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from threadpoolctl import threadpool_limits
from torch import nn

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor, predict_uncertainty
from skhydra.ensembles import predict_members
from skhydra.nn import HydraModule
from skhydra.uncertainty import classification_uncertainty

MB = 1e6


def n_params(model):
    return sum(p.numel() for p in model.net_.module_.parameters())


def module_forward(model, X, chunk=4096):
    """The student's torch module alone (no validation, skorch nor numpy post-processing).

    Chunked like the estimator's own prediction (4096 rows): the floor of its
    predict calls.
    """
    module = model.net_.module_
    with torch.no_grad():
        return np.concatenate(
            [module(torch.from_numpy(X[i : i + chunk])).numpy() for i in range(0, len(X), chunk)]
        )


def torch_epoch_time(n_heads, n_classes, X, epochs, batch_size=256, temperature=4.0):
    """Median seconds of a plain torch training epoch (AdamW, tempered KL) of a HydraModule."""
    torch.manual_seed(0)
    module = HydraModule(np.zeros(X.shape[1]), np.ones(X.shape[1]), (256, 256), (), n_classes)
    module.expand_heads(n_heads)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-4)
    X = torch.from_numpy(X)
    target = torch.softmax(torch.randn(len(X), n_heads, n_classes), dim=-1)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(X))
        for i in range(0, len(X), batch_size):
            index = order[i : i + batch_size]
            logp = torch.log_softmax(module(X[index]) / temperature, dim=-1)
            loss = -(target[index] * logp).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_round_robin(jobs, repeats):
    """Median, min and max seconds of each job, the jobs interleaved per repeat."""
    times = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (np.median(t), min(t), max(t)) for name, t in times.items()}


def print_table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def timing_table(title, timings, reference, teacher_keys):
    print(f"\n#### {title}\n")
    ref = timings[reference][0]
    rows = []
    for name, (med, lo, hi) in timings.items():
        who = "teacher" if name in teacher_keys else "student"
        rows.append([who, name, f"{med:.3f}", f"{lo:.3f}-{hi:.3f}", f"{med / ref:.2f}"])
    print_table(
        ["", "call", "median s", "min-max s", f"time / student {reference}"],
        rows,
    )


def student_params(args, extra=None):
    return dict(
        phase1_epochs=args.phase1_epochs,
        max_epochs=args.phase1_epochs + args.max_epochs,
        device="cpu",
        random_state=0,
        **(extra or {}),
    )


def classification_teachers(args, X, y, n_sub, report):
    """Fit the forest (all rows) and the 5 MLPs (a subset), recording fit times."""
    start = time.perf_counter()
    forest = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0).fit(X, y)
    report["fit"].append(
        ["forest (100 trees, n_jobs=2)", f"{len(X)} rows", f"{time.perf_counter() - start:.1f}"]
    )
    start = time.perf_counter()
    mlps = [
        MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=args.mlp_iter, random_state=s).fit(
            X[:n_sub], y[:n_sub]
        )
        for s in range(5)
    ]
    report["fit"].append(
        [
            f"5 MLPs (256, 256), max_iter={args.mlp_iter}",
            f"{n_sub} rows",
            f"{time.perf_counter() - start:.1f}",
        ]
    )
    return forest, mlps


def set_jobs(forest, n_jobs):
    forest.set_params(n_jobs=n_jobs)
    return forest


def bench_classification(args, report):
    X, y = make_classification(
        n_samples=args.rows, n_features=20, n_informative=10, n_classes=3, random_state=0
    )
    X = X.astype(np.float32)
    n_sub = args.transfer_rows or max(args.rows // 5, 500)
    forest, mlps = classification_teachers(args, X, y, n_sub, report)
    teachers = {"forest": forest, "mlp": mlps}
    students, kd = {}, {}
    for name, teacher in teachers.items():
        start = time.perf_counter()
        students[name] = HydraDistilledClassifier(teacher, **student_params(args)).fit(X[:n_sub])
        report["fit"].append(
            [
                f"Hydra student of the {name} ({students[name].n_heads_} heads)",
                f"{n_sub} transfer rows (+ {n_sub} noise rows)",
                f"{time.perf_counter() - start:.1f}",
            ]
        )
        # KD: the same estimator with one head; only its size matters here.
        kd[name] = HydraDistilledClassifier(
            teacher, n_heads=1, phase1_epochs=0, max_epochs=0, device="cpu", random_state=0
        ).fit(X[:200])

    for name, teacher in teachers.items():
        student = students[name]
        student.predict_uncertainty(X[:1000])  # warm-up, untimed
        heads = student.predict_members(X)
        if name == "forest":
            jobs = {
                "predict_members": lambda t=teacher: predict_members(set_jobs(t, 1), X),
                "predict_proba (n_jobs=1)": lambda t=teacher: set_jobs(t, 1).predict_proba(X),
                "predict_proba (n_jobs=2)": lambda t=teacher: set_jobs(t, 2).predict_proba(X),
                "predict_uncertainty": lambda t=teacher: predict_uncertainty(set_jobs(t, 1), X),
            }
        else:
            jobs = {
                "predict_members": lambda t=teacher: predict_members(t, X),
                "predict_proba (mean of members)": lambda t=teacher: np.mean(
                    [m.predict_proba(X) for m in t], axis=0
                ),
                "predict_uncertainty": lambda t=teacher: predict_uncertainty(t, X),
            }
        teacher_keys = {f"ensemble {k}" for k in jobs}
        jobs = {f"ensemble {k}": fn for k, fn in jobs.items()}
        jobs.update(
            {
                "predict_proba": lambda s=student: s.predict_proba(X),
                "predict_members": lambda s=student: s.predict_members(X),
                "predict_uncertainty": lambda s=student: s.predict_uncertainty(X),
                "module forward (torch only)": lambda s=student: module_forward(s, X),
                "decomposition only (numpy, on the heads)": lambda P=heads, s=student: (
                    classification_uncertainty(P, s.head_weights_)
                ),
            }
        )
        timings = time_round_robin(jobs, args.repeats)
        report["timings"][name] = timings
        timing_table(
            f"Prediction on {len(X)} rows, teacher: {name}, student: "
            f"{student.n_heads_} heads, body {student.body_layer_sizes}",
            timings,
            "predict_uncertainty",
            teacher_keys,
        )

        sizes = {
            "teacher": len(pickle.dumps(teacher)),
            "student (full, holds the teacher)": len(pickle.dumps(student)),
            "student.without_teacher()": len(pickle.dumps(student.without_teacher())),
        }
        report["sizes"][name] = sizes
        report["params"][name] = (n_params(kd[name]), n_params(student), student.n_heads_)
        report["students"][name] = student

    print("\n#### Pickled size (`len(pickle.dumps(...))`)\n")
    rows = []
    for name, sizes in report["sizes"].items():
        for what, size in sizes.items():
            ratio = sizes["teacher"] / size
            rows.append([name, what, f"{size / MB:.2f}", f"{ratio:.1f}", f"{1 / ratio:.4f}"])
    print_table(["teacher", "object", "MB", "teacher / object", "object / teacher"], rows)

    # Where the student-alone bytes go (approximate: each part pickled alone).
    net = report["students"]["forest"].without_teacher().net_
    parts = {
        "module_ state_dict (weights)": net.module_.state_dict(),
        "optimizer_ state_dict (AdamW moments)": net.optimizer_.state_dict(),
        "train_split (validation rows)": net.train_split,
        "history_": net.history_,
    }
    print("Student alone of the forest, approximate parts of its pickle:\n")
    print_table(["part", "MB"], [[k, f"{len(pickle.dumps(v)) / MB:.2f}"] for k, v in parts.items()])

    print("\n#### Parameters: Hydra versus KD (n_heads=1), same body (256, 256), 3 classes\n")
    rows = []
    for name, (p_kd, p_hydra, heads) in report["params"].items():
        rows.append(
            [
                name,
                heads,
                p_kd,
                p_hydra,
                f"{p_hydra / p_kd:.3f}",
                f"{100 * (p_hydra - p_kd) / p_kd:.1f}%",
            ]
        )
    mlp_params = sum(c.size for m in teachers["mlp"] for c in m.coefs_ + m.intercepts_)
    nodes = sum(t.tree_.node_count for t in teachers["forest"].estimators_)
    print_table(["teacher", "heads", "KD params", "Hydra params", "ratio", "overhead"], rows)
    print(f"For scale: the 5 MLPs hold {mlp_params} parameters; the forest {nodes} tree nodes.\n")


def bench_regression(args, report):
    X, y = make_regression(
        n_samples=args.rows, n_features=20, n_informative=10, noise=10.0, random_state=0
    )
    X = X.astype(np.float32)
    n_sub = args.transfer_rows or max(args.rows // 5, 500)
    start = time.perf_counter()
    mlps = [
        MLPRegressor(hidden_layer_sizes=(256, 256), max_iter=args.mlp_iter, random_state=s).fit(
            X[:n_sub], y[:n_sub]
        )
        for s in range(5)
    ]
    report["fit"].append(
        [
            f"5 MLPRegressors (256, 256), max_iter={args.mlp_iter}",
            f"{n_sub} rows",
            f"{time.perf_counter() - start:.1f}",
        ]
    )
    start = time.perf_counter()
    student = HydraDistilledRegressor(mlps, **student_params(args)).fit(X[:n_sub], y[:n_sub])
    report["fit"].append(
        [
            "Hydra student of the MLPRegressors (5 heads)",
            f"{n_sub} transfer rows (+ {n_sub} noise rows)",
            f"{time.perf_counter() - start:.1f}",
        ]
    )
    jobs = {
        "ensemble predict_members": lambda: predict_members(mlps, X),
        "ensemble predict (mean of members)": lambda: np.mean([m.predict(X) for m in mlps], 0),
        "ensemble predict_uncertainty": lambda: predict_uncertainty(mlps, X),
        "predict": lambda: student.predict(X),
        "predict_members": lambda: student.predict_members(X),
        "predict_uncertainty": lambda: student.predict_uncertainty(X),
        "module forward (torch only)": lambda: module_forward(student, X),
    }
    student.predict_uncertainty(X[:1000])
    timings = time_round_robin(jobs, args.repeats)
    report["timings"]["mlp-regression"] = timings
    timing_table(
        f"Prediction on {len(X)} rows, regression, teacher: 5 MLPRegressors, student: 5 heads",
        timings,
        "predict_uncertainty",
        {k for k in jobs if k.startswith("ensemble")},
    )
    size_t, size_s = len(pickle.dumps(mlps)), len(pickle.dumps(student.without_teacher()))
    print(
        f"Pickled: 5 MLPRegressors {size_t / MB:.2f} MB, student alone {size_s / MB:.2f} MB "
        f"(ratio {size_t / size_s:.1f}).\n"
    )


def bench_epochs(args, report):
    """Phase-2 epoch time versus heads, through the estimator (skorch history)."""
    n = args.epoch_rows or args.rows // 2
    heads = [int(h) for h in args.heads.split(",")]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 20)).astype(np.float32)
    print(
        f"\n#### Phase-2 epoch time versus heads: {n} rows, body (256, 256), linear heads, "
        f"batch 256, median of {args.epochs} epochs\n"
    )
    rows = []
    for n_classes in [int(c) for c in args.epoch_classes.split(",")]:
        torch.manual_seed(0)
        # Synthetic targets: random linear torch "members", one per head at most.
        teacher = [nn.Linear(20, n_classes) for _ in range(max(heads))]
        base = loop_base = None
        for h in heads:
            model = HydraDistilledClassifier(
                teacher,
                n_heads=h,
                phase1_epochs=0,
                max_epochs=args.epochs,
                batch_size=256,
                early_stopping=False,
                augmentation=None,
                device="cpu",
                random_state=0,
            ).fit(X)
            durations = model.net_.history[-args.epochs :, "dur"]
            med = float(np.median(durations))
            base = med if base is None else base
            loop = torch_epoch_time(h, n_classes, X, args.epochs)
            loop_base = loop if loop_base is None else loop_base
            body = 20 * 256 + 256 * 256
            rows.append(
                [
                    n_classes,
                    h,
                    n_params(model),
                    f"{h * 256 * n_classes / body:.2f}",
                    f"{med:.3f}",
                    f"{min(durations):.3f}-{max(durations):.3f}",
                    f"{med / base:.2f}",
                    f"{loop:.3f}",
                    f"{loop / loop_base:.2f}",
                ]
            )
            report["epochs"][(n_classes, h)] = med / base
    print_table(
        [
            "classes",
            "heads",
            "params",
            "head / body multiply-adds",
            "median s / epoch",
            "min-max s",
            "vs 1 head",
            "plain torch loop s / epoch",
            "vs 1 head",
        ],
        rows,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the timed data")
    parser.add_argument(
        "--transfer-rows",
        type=int,
        default=None,
        help="rows fitting the MLPs and distilling (default rows // 5)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings per call (median)")
    parser.add_argument("--mlp-iter", type=int, default=5, help="max_iter of the MLP teachers")
    parser.add_argument("--phase1-epochs", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=3, help="epochs of phase 2")
    parser.add_argument(
        "--epoch-rows", type=int, default=None, help="transfer set of the epoch timing (rows // 2)"
    )
    parser.add_argument("--epoch-classes", default="10,3")
    parser.add_argument("--heads", default="1,10,100")
    parser.add_argument("--epochs", type=int, default=4, help="timed phase-2 epochs per config")
    parser.add_argument("--no-regression", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS / OpenMP threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # MLP ConvergenceWarning, unknown-variance warnings

    report = {"fit": [], "timings": {}, "sizes": {}, "params": {}, "students": {}, "epochs": {}}
    start = time.perf_counter()
    print(
        f"# Cost benchmark: {args.rows} rows, threads={args.threads}, repeats={args.repeats}, "
        f"student budget phase1_epochs={args.phase1_epochs}, "
        f"max_epochs={args.phase1_epochs + args.max_epochs}"
    )
    with threadpool_limits(args.threads):
        bench_classification(args, report)
        if not args.no_regression:
            bench_regression(args, report)
        bench_epochs(args, report)

    print("\n#### Fit times (informational; budgets kept short)\n")
    print_table(["model", "data", "s"], report["fit"])

    t = report["timings"]
    s = report["sizes"]["forest"]
    mlp_ratio = t["mlp"]["ensemble predict_members"][0] / t["mlp"]["predict_uncertainty"][0]
    forest_ratio = (
        t["forest"]["ensemble predict_members"][0] / t["forest"]["predict_uncertainty"][0]
    )
    full = s["teacher"] / s["student (full, holds the teacher)"]
    alone = s["teacher"] / s["student.without_teacher()"]
    heads = [int(h) for h in args.heads.split(",")]
    targets = [
        ["student predict_uncertainty >= 4x faster than 5 MLPs' members", mlp_ratio, 4.0],
        ["student predict_uncertainty >= 2x faster than forest members", forest_ratio, 2.0],
        ["pickled forest >= 20x the student (full, holds the forest)", full, 20.0],
        ["pickled forest >= 20x the student alone (without_teacher)", alone, 20.0],
    ]
    rows = [
        [what, f"{value:.2f}x", "yes" if value >= goal else "NO"] for what, value, goal in targets
    ]
    for (n_classes, h), ratio in report["epochs"].items():
        if h == max(heads) and h > 1:
            rows.append(
                [
                    f"{h} heads epoch <= 1.5x one head ({n_classes} classes)",
                    f"{ratio:.2f}x",
                    "yes" if ratio <= 1.5 else "NO",
                ]
            )
    print("\n#### Targets\n")
    print_table(["target", "measured", "met"], rows)
    print(f"Total benchmark time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
