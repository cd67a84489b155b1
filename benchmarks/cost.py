"""Cost benchmark: the Hydra student versus the ensemble it distils, on the CPU.

What a user pays for uncertainty, measured side by side in one process (all
timings are medians of round-robin repeats, so slow phases of a busy machine
hit every contender alike; ratios are what to read, absolute times are noisy):

1. **Throughput**, 100k rows: the teacher's uncertainty (every member's
   probabilities, on as many threads as the student has, plus the
   decomposition) versus the student's
   ``predict_uncertainty``, at 3 and 10 classes, 20 and 100 features
   (``make_classification``), 1 and 2 threads (torch, BLAS, OpenMP and the
   forest's ``n_jobs``). Teachers: a 100-tree ``RandomForestClassifier``
   fitted on the rows, and 5 ``MLPClassifier((256, 256))`` (3 classes, 20
   features). Students: default architecture (``head_rank="auto"``), and
   full-width heads (``head_rank=None``) for comparison.
2. **Small calls**, 100 and 1,000 rows: the same calls for teachers a user
   has at hand (the forest, the MLPs, 20 bagged logistic regressions, a
   3-model soft vote), where per-call overhead decides.
3. **Phase-2 epoch time** versus heads, through the estimator (skorch
   history, no validation), 3 and 10 classes, for each ``head_rank``.
4. **Pickled size** of the forest versus ``student.without_teacher()``.

Students are trained briefly (the cost of predicting does not depend on how
well they learned); their fidelity is measured by ``digits_ood.py``.

    python benchmarks/cost.py --output benchmarks/results/cost.md   # about 15 min
    python benchmarks/cost.py --quick --output /tmp/cost.md          # about 1 min
    python benchmarks/cost.py --smoke --output /tmp/cost.md          # seconds, a logic test
"""

import argparse
import pickle
import sys
import time
import warnings

import numpy as np
import torch
from _provenance import header, table, write_report
from _stats import median_times
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    BaggingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits
from torch import nn

from skhydra import HydraDistilledClassifier, predict_uncertainty
from skhydra.ensembles import predict_members
from skhydra.uncertainty import classification_uncertainty

MB = 1e6
#: Overrides of every student's settings (``--smoke`` makes them tiny).
SMALL_STUDENT = {}
RANKS = {"auto": "auto", "full": None}


def student(teacher, X, head_rank="auto", **params):
    """A briefly trained default student (its cost, not its quality, is measured)."""
    budget = dict(phase1_epochs=1, max_epochs=2, device="cpu", random_state=0)
    budget.update(SMALL_STUDENT)
    budget.update(params)
    return HydraDistilledClassifier(teacher, head_rank=head_rank, **budget).fit(X)


def data(rows, n_features, n_classes):
    X, y = make_classification(
        n_samples=rows,
        n_features=n_features,
        n_informative=min(10, n_features),
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=0,
    )
    return X.astype(np.float32), y


def bench_throughput(args, out, results):
    """Section 1: teacher vs student predict_uncertainty on ``args.rows`` rows."""
    rows = []
    keep = {}
    for n_classes in args.classes:
        for n_features in args.features:
            X, y = data(args.rows, n_features, n_classes)
            start = time.perf_counter()
            forest = RandomForestClassifier(n_estimators=args.trees, n_jobs=2, random_state=0)
            forest.fit(X[: args.fit_rows], y[: args.fit_rows])
            fit_s = time.perf_counter() - start
            transfer = X[: args.transfer_rows]
            students = {k: student(forest, transfer, r) for k, r in RANKS.items()}
            if (n_classes, n_features) == (args.classes[0], args.features[0]):
                keep.update(X=X, y=y, forest=forest, forest_student=students["auto"])
            for threads in args.threads:
                torch.set_num_threads(threads)
                with threadpool_limits(threads):
                    for s in students.values():
                        s.predict_uncertainty(X[:1000])  # warm-up, untimed
                    t = median_times(
                        {
                            "teacher": lambda f=forest, n=threads, X=X: classification_uncertainty(
                                predict_members(f, X, n_jobs=n)
                            ),
                            **{
                                k: (lambda s=s, X=X: s.predict_uncertainty(X))
                                for k, s in students.items()
                            },
                        },
                        args.repeats,
                    )
                ratio = {k: t["teacher"] / t[k] for k in RANKS}
                results["throughput"][("forest", n_classes, n_features, threads)] = ratio
                rows.append(
                    [
                        f"{args.trees}-tree forest",
                        n_classes,
                        n_features,
                        threads,
                        f"{t['teacher']:.3f}",
                        f"{t['auto']:.3f} (rank {students['auto'].head_rank_})",
                        f"{t['full']:.3f}",
                        f"**{ratio['auto']:.2f}x**",
                        f"{ratio['full']:.2f}x",
                    ]
                )
            print(
                f"forest {n_classes} classes, {n_features} features: fitted in {fit_s:.0f} s, "
                f"{sum(e.tree_.node_count for e in forest.estimators_)} nodes",
                file=sys.stderr,
            )

    # Five MLPs (256, 256), 3 classes, 20 features: the "same-sized body" case.
    X, y = keep["X"], keep["y"]
    with threadpool_limits(max(args.threads)):
        mlps = [
            MLPClassifier((256, 256), max_iter=args.mlp_iter, random_state=s).fit(
                X[: args.transfer_rows], y[: args.transfer_rows]
            )
            for s in range(5)
        ]
    mlp_student = student(mlps, X[: args.transfer_rows])
    keep.update(mlps=mlps, mlp_student=mlp_student)
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            mlp_student.predict_uncertainty(X[:1000])
            t = median_times(
                {
                    "teacher": lambda: predict_uncertainty(mlps, X),
                    "auto": lambda: mlp_student.predict_uncertainty(X),
                },
                args.repeats,
            )
        ratio = t["teacher"] / t["auto"]
        results["throughput"][("mlp", args.classes[0], args.features[0], threads)] = {"auto": ratio}
        rows.append(
            [
                "5 MLPs (256, 256)",
                args.classes[0],
                args.features[0],
                threads,
                f"{t['teacher']:.3f}",
                f"{t['auto']:.3f} (rank {mlp_student.head_rank_})",
                "same",
                f"**{ratio:.2f}x**",
                "",
            ]
        )
    out.append(
        f"## Throughput: `predict_uncertainty` on {args.rows:,} rows\n\n"
        f"Teacher: every member's probabilities, then the entropy decomposition "
        f"(`classification_uncertainty(predict_members(forest, X, n_jobs=threads))` for the "
        f"forest, whose trees then predict on that many threads; "
        f"`skhydra.predict_uncertainty(mlps, X)` for the MLPs, whose BLAS uses them); the "
        f"forest is fitted on {args.fit_rows:,} rows. Student: `predict_uncertainty` with the "
        f'default `head_rank="auto"`, and with full-width heads (`head_rank=None`). '
        f"Median of {args.repeats} round-robin repeats.\n\n"
        + table(
            [
                "teacher",
                "classes",
                "features",
                "threads",
                "teacher s",
                "student s (default)",
                "student s (full-width heads)",
                "teacher / student (default)",
                "teacher / student (full width)",
            ],
            rows,
        )
    )
    return keep


def bench_small_calls(args, out, results, keep):
    """Section 2: 100 and 1,000 rows, where per-call overhead decides."""
    X, y = keep["X"], keep["y"]
    fit_X, fit_y = X[: args.transfer_rows], y[: args.transfer_rows]
    with threadpool_limits(1):
        bagging = BaggingClassifier(
            LogisticRegression(max_iter=500), n_estimators=20, random_state=0
        ).fit(fit_X, fit_y)
        voting = VotingClassifier(
            [
                ("lr", LogisticRegression(max_iter=500)),
                ("rf", RandomForestClassifier(args.trees, random_state=0)),
                ("hgb", HistGradientBoostingClassifier(random_state=0)),
            ],
            voting="soft",
        ).fit(fit_X, fit_y)
    teachers = {
        f"{args.trees}-tree forest": (keep["forest"], keep["forest_student"]),
        "5 MLPs (256, 256)": (keep["mlps"], keep["mlp_student"]),
        "20 bagged logistic regressions": (bagging, student(bagging, fit_X)),
        "soft vote: logistic regression, forest, boosting": (voting, student(voting, fit_X)),
    }
    rows = []
    torch.set_num_threads(1)
    with threadpool_limits(1):
        for name, (teacher, s) in teachers.items():
            if hasattr(teacher, "n_jobs"):
                teacher.set_params(n_jobs=1)
            for n in (100, 1000):
                part = X[-n:]
                s.predict_uncertainty(part)
                predict_uncertainty(teacher, part)
                t = median_times(
                    {
                        "teacher": lambda t=teacher, p=part: predict_uncertainty(t, p),
                        "student": lambda s=s, p=part: s.predict_uncertainty(p),
                    },
                    args.small_repeats,
                )
                ratio = t["teacher"] / t["student"]
                results["small"][(name, n)] = ratio
                rows.append(
                    [
                        name,
                        n,
                        f"{1e3 * t['teacher']:.2f}",
                        f"{1e3 * t['student']:.2f}",
                        f"{ratio:.2f}x",
                    ]
                )
    out.append(
        "## Small calls: 100 and 1,000 rows, 1 thread\n\n"
        f"`predict_uncertainty` of the teacher and of its default student, median of "
        f"{args.small_repeats} round-robin repeats; teachers fitted on "
        f"{args.transfer_rows:,} rows of the 3-class, {args.features[0]}-feature data.\n\n"
        + table(["teacher", "rows", "teacher ms", "student ms", "teacher / student"], rows)
    )


def bench_epochs(args, out, results):
    """Section 3: phase-2 epoch time versus heads, through the estimator."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.epoch_rows, 20)).astype(np.float32)
    rows = []
    torch.set_num_threads(1)
    for n_classes in args.classes:
        torch.manual_seed(0)
        # Fast teachers (random linear torch members), so the epochs are what is timed.
        teacher = [nn.Linear(20, n_classes) for _ in range(max(args.heads))]
        base = None
        for rank_name, rank in RANKS.items():
            for h in args.heads:
                model = HydraDistilledClassifier(
                    teacher[:h] if h > 1 else teacher,
                    n_heads=h,
                    head_rank=rank,
                    phase1_epochs=0,
                    max_epochs=args.epochs,
                    batch_size=256,
                    early_stopping=False,
                    augmentation=None,
                    device="cpu",
                    random_state=0,
                    **SMALL_STUDENT,
                ).fit(X)
                durations = model.net_.history[-args.epochs :, "dur"]
                # The fastest epoch: the least disturbed by other work on a shared machine.
                best = float(np.min(durations))
                if h == 1 and rank_name == "auto":
                    base = best
                ratio = best / base
                results["epochs"][(n_classes, h, rank_name)] = ratio
                params = sum(p.numel() for p in model.net_.module_.parameters())
                rows.append(
                    [
                        n_classes,
                        h,
                        f"{rank_name} ({model.head_rank_})",
                        params,
                        f"{best:.3f}",
                        f"{float(np.median(durations)):.3f}",
                        f"{ratio:.2f}x",
                    ]
                )
    out.append(
        f"## Phase-2 epoch time versus heads\n\n{args.epoch_rows:,} rows, 20 features, body "
        f"(256, 256), linear heads, batch 256, no validation, 1 thread; {args.epochs} epochs "
        "per fit, timed by the estimator's history; ratios compare the fastest epochs (the "
        'least disturbed by other work on the machine). `head_rank` "auto" keeps full-width '
        "heads when the projection would not halve the heads' cost (the rank used is in "
        "brackets).\n\n"
        + table(
            [
                "classes",
                "heads",
                "head_rank (rank used)",
                "parameters",
                "fastest s / epoch",
                "median s / epoch",
                "fastest vs 1 head",
            ],
            rows,
        )
    )


def bench_size(out, results, keep):
    """Section 4: pickled forest versus the student alone."""
    forest, s = keep["forest"], keep["forest_student"]
    sizes = {
        "forest": len(pickle.dumps(forest)),
        "student (holds the forest)": len(pickle.dumps(s)),
        "student.without_teacher()": len(pickle.dumps(s.without_teacher())),
    }
    full = student(forest, keep["X"][:2000], head_rank=None)
    sizes["student.without_teacher(), full-width heads"] = len(pickle.dumps(full.without_teacher()))
    results["size"] = sizes["forest"] / sizes["student.without_teacher()"]
    rows = [[k, f"{v / MB:.2f}", f"{sizes['forest'] / v:.1f}x"] for k, v in sizes.items()]
    out.append(
        "## Pickled size (`len(pickle.dumps(...))`)\n\n"
        + table(["object", "MB", "forest / object"], rows)
    )


def targets(args, results):
    rows = []

    def add(what, value, ok):
        rows.append([what, value, "yes" if ok else "**no**"])

    for (kind, c, f, threads), r in results["throughput"].items():
        goal = 5.0 if kind == "forest" else 4.0
        add(
            f"{kind}: predict_uncertainty >= {goal:.0f}x faster ({c} classes, {f} features, "
            f"{threads} thread{'s' if threads > 1 else ''})",
            f"{r['auto']:.2f}x",
            r["auto"] >= goal,
        )
    for (name, n), r in results["small"].items():
        add(f"{name}, {n} rows: student not slower", f"{r:.2f}x", r >= 1.0)
    for (c, h, rank), r in results["epochs"].items():
        if rank == "auto" and h == max(args.heads) and h > 1:
            add(f"phase-2 epoch, {h} heads <= 1.5x one head ({c} classes)", f"{r:.2f}x", r <= 1.5)
    if "size" in results:
        add(
            "pickled forest >= 50x student.without_teacher()",
            f"{results['size']:.1f}x",
            results["size"] >= 50,
        )
    return "## Targets (issue 15)\n\n" + table(["target", "measured", "met"], rows)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the timed data")
    parser.add_argument("--fit-rows", type=int, default=None, help="forest fit rows (all)")
    parser.add_argument("--transfer-rows", type=int, default=5000)
    parser.add_argument("--classes", default="3,10")
    parser.add_argument("--features", default="20,100")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-repeats", type=int, default=31)
    parser.add_argument("--mlp-iter", type=int, default=5)
    parser.add_argument("--epoch-rows", type=int, default=20_000)
    parser.add_argument("--heads", default="1,10,100")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--trees", type=int, default=100, help="trees of the forests")
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--output", default=None, help="markdown report with provenance")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.transfer_rows, args.epoch_rows, args.trees = 1000, 300, 300, 10
        args.classes, args.features, args.threads, args.repeats = "3", "20", "1", 1
        args.small_repeats, args.epochs, args.heads, args.mlp_iter = 1, 1, "1,3", 1
        SMALL_STUDENT.update(body_layer_sizes=(16,))
        torch.set_num_threads(1)  # tiny nets: a second thread only adds contention
    elif args.quick:
        args.rows, args.transfer_rows, args.epoch_rows = 5000, 1000, 2000
        args.features, args.threads, args.repeats, args.small_repeats = "20", "1", 1, 3
        args.epochs, args.heads = 2, "1,100"
    args.fit_rows = args.fit_rows or args.rows
    args.classes = [int(c) for c in args.classes.split(",")]
    args.features = [int(f) for f in args.features.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    args.heads = [int(h) for h in args.heads.split(",")]
    warnings.filterwarnings("ignore")  # MLP ConvergenceWarning

    start = time.perf_counter()
    results = {"throughput": {}, "small": {}, "epochs": {}}
    sections = []
    keep = bench_throughput(args, sections, results)
    bench_small_calls(args, sections, results, keep)
    bench_size(sections, results, keep)
    bench_epochs(args, sections, results)
    torch.set_num_threads(max(args.threads))
    report = "\n".join(
        [
            header(
                "Cost benchmark: the student versus the ensemble it distils",
                "benchmarks/cost.py",
                argv,
                "0 (data, forests, students)",
                start,
            ),
            targets(args, results),
            *sections,
        ]
    )
    print(report)
    if args.output:
        write_report(args.output, report)


if __name__ == "__main__":
    main()
