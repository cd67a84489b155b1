"""ONNX serving benchmark: a 100-tree forest versus its Hydra student, both in onnxruntime.

What serving the ensemble's uncertainty costs when both models are ONNX graphs
run by onnxruntime on the CPU (timings are medians of round-robin repeats, so a
busy machine slows every contender alike; read the ratios):

- **Teacher**: a 100-tree ``RandomForestClassifier`` on ``make_classification``
  (20 features, 5 classes, fitted on 20,000 rows). skl2onnx converts a forest
  to one tree-ensemble node that outputs the *mean* of the trees only, and has
  no option for per-tree probabilities (``decision_leaf`` adds a second
  tree node per tree and gives leaf ids, not probabilities). The graph used
  here is built from skl2onnx's own tree-attribute helper as **one**
  ``TreeEnsembleRegressor`` node with ``100 x 5`` targets, tree ``t`` writing
  its leaf's class fractions to targets ``5t .. 5t + 4``: every tree's
  probabilities in one pass over the trees, the fastest ONNX form found. The
  decomposition (entropy of the mean, mean entropy of the trees, their
  difference) is computed **in the graph** too, so each model answers
  ``predict_uncertainty`` in one ``session.run``, as the student does; the
  stock skl2onnx forest (mean probabilities, no uncertainty) is timed for
  reference on the small batches.
- **Student**: ``HydraDistilledClassifier`` with the default architecture,
  briefly trained on 5,000 rows (the cost of predicting does not depend on
  how well it learned), exported by ``skhydra.to_onnx``.

Measured: file sizes, session load time (``InferenceSession`` from the file,
graph optimisation included), and the throughput of one ``session.run`` that
gives the uncertainty, at 1 and 2 threads (``intra_op_num_threads``), on
batches of 1,000 and 100,000 rows. Both graphs are first checked against
Python (``predict_uncertainty`` of the forest and of the student).

    python benchmarks/onnx_serving.py --output benchmarks/results/onnx_serving.md  # ~4 min
    python benchmarks/onnx_serving.py --quick                                       # ~20 s
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from _provenance import provenance, table, write_report
from _stats import median_times
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.tree_ensemble import (
    add_tree_to_attribute_pairs,
    get_default_tree_regressor_attribute_pairs,
)
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from skhydra import HydraDistilledClassifier, predict_uncertainty, to_onnx

OPSET = 18
MB = 1e6
TARGETS = {"speed": 10.0, "size": 50.0, "load_s": 1.0}
STOCK = "forest (stock skl2onnx, mean only)"
STOCK_MAX_ROWS = 10_000


def forest_graph(forest, n_features):
    """The forest as one ONNX graph: per-tree probabilities and their decomposition."""
    n_trees, n_classes = len(forest.estimators_), len(forest.classes_)
    attrs = get_default_tree_regressor_attribute_pairs()
    for t, tree in enumerate(forest.estimators_):
        # Leaves hold class fractions; tree t writes them to targets t*C .. t*C + C - 1.
        add_tree_to_attribute_pairs(
            attrs, False, tree.tree_, t, 1.0, t * n_classes, True, True, dtype=np.float32
        )
    # Class-major targets (class c of tree t at c*T + t): the decomposition then reduces
    # over the trees on the last axis and over the classes in the middle, where
    # onnxruntime is fast (a last axis of a few classes is slow).
    tree, cls = np.divmod(np.asarray(attrs["target_ids"]), n_classes)
    attrs["target_ids"] = (cls * n_trees + tree).tolist()
    attrs["n_targets"] = n_trees * n_classes
    attrs["aggregate_function"] = "SUM"
    for key in ("nodes_values", "target_weights", "nodes_hitrates"):
        attrs[key] = np.asarray(attrs[key], dtype=np.float32)

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name=name)

    nodes = [
        helper.make_node("TreeEnsembleRegressor", ["X"], ["flat"], domain="ai.onnx.ml", **attrs),
        helper.make_node("Reshape", ["flat", "shape"], ["p"]),  # (n, classes, trees)
        helper.make_node("MatMul", ["p", "mean_weights"], ["q"]),  # (n, classes, 1)
        helper.make_node("Squeeze", ["q", "axis2"], ["probabilities"]),
        helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0),
        helper.make_node("Gather", ["classes", "index"], ["label"], axis=0),
        # entropy of the mean: -sum q log q, with 0 log 0 = 0
        helper.make_node("Log", ["probabilities"], ["log_q"]),
        helper.make_node("Mul", ["probabilities", "log_q"], ["q_log_q_raw"]),
        helper.make_node("Greater", ["probabilities", "zero"], ["q_pos"]),
        helper.make_node("Where", ["q_pos", "q_log_q_raw", "zero"], ["q_log_q"]),
        helper.make_node("ReduceSum", ["q_log_q", "axis1"], ["neg_total"], keepdims=0),
        # mean entropy of the trees
        helper.make_node("Log", ["p"], ["log_p"]),
        helper.make_node("Mul", ["p", "log_p"], ["p_log_p_raw"]),
        helper.make_node("Greater", ["p", "zero"], ["p_pos"]),
        helper.make_node("Where", ["p_pos", "p_log_p_raw", "zero"], ["p_log_p"]),
        helper.make_node("ReduceSum", ["p_log_p", "axis1"], ["neg_h"], keepdims=0),
        helper.make_node("MatMul", ["neg_h", "mean_weights"], ["neg_aleatoric_col"]),
        helper.make_node("Squeeze", ["neg_aleatoric_col", "axis1"], ["neg_aleatoric"]),
        helper.make_node("Neg", ["neg_aleatoric"], ["aleatoric"]),
        helper.make_node("Sub", ["neg_aleatoric", "neg_total"], ["gap"]),
        helper.make_node("Max", ["gap", "zero"], ["epistemic"]),
        helper.make_node("Add", ["aleatoric", "epistemic"], ["total"]),
    ]
    initializers = [
        const("shape", np.array([-1, n_classes, n_trees], dtype=np.int64)),
        const("mean_weights", np.full((n_trees, 1), 1.0 / n_trees, dtype=np.float32)),
        const("axis1", np.array([1], dtype=np.int64)),
        const("axis2", np.array([2], dtype=np.int64)),
        const("zero", np.array(0.0, dtype=np.float32)),
        const("classes", np.asarray(forest.classes_, dtype=np.int64)),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", n_classes]),
    ] + [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"])
        for name in ("total", "aleatoric", "epistemic")
    ]
    graph = helper.make_graph(
        nodes,
        "forest_uncertainty",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", n_features])],
        outputs,
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    onnx.checker.check_model(model)
    return model


def stock_forest_graph(forest, n_features):
    """skl2onnx's own conversion: the mean probabilities only."""
    return convert_sklearn(
        forest,
        initial_types=[("X", FloatTensorType([None, n_features]))],
        options={id(forest): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_graphs(paths, forest, student, X):
    """Max absolute differences of the graphs' uncertainty from Python's."""
    rows = []
    for name, model in (("forest", forest), ("student", student)):
        out = session(paths[name], 1).run(["total", "aleatoric", "epistemic"], {"X": X})
        ref = predict_uncertainty(model, X)
        diff = max(
            np.abs(o - ref[c].to_numpy()).max() for o, c in zip(out, ref.columns, strict=True)
        )
        rows.append((name, f"{diff:.1e}"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-rows", type=int, default=20_000, help="forest training rows")
    parser.add_argument("--transfer-rows", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batches", default="1000,100000", help="rows per session.run")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the largest batch")
    parser.add_argument("--trees", type=int, default=100, help="trees of the forest")
    parser.add_argument("--quick", action="store_true", help="small sizes, about 30 s")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--output", default=None, help="markdown report with provenance")
    args = parser.parse_args()
    if args.quick:
        args.fit_rows, args.transfer_rows, args.batches, args.repeats = 3000, 1000, "1000", 3
    if args.smoke:
        args.fit_rows, args.transfer_rows, args.batches, args.repeats = 500, 300, "200", 1
        args.trees, args.threads = 5, "1"
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(threads))
    start = time.perf_counter()

    X, y = make_classification(
        n_samples=args.fit_rows + max(batches),
        n_features=args.features,
        n_informative=10,
        n_classes=args.classes,
        n_clusters_per_class=1,
        random_state=0,
    )
    X = X.astype(np.float32)
    X_fit, y_fit, X_serve = X[: args.fit_rows], y[: args.fit_rows], X[args.fit_rows :]
    forest = RandomForestClassifier(n_estimators=args.trees, n_jobs=max(threads), random_state=0)
    forest.fit(X_fit, y_fit)
    student = HydraDistilledClassifier(
        forest, phase1_epochs=1, max_epochs=2, device="cpu", random_state=0
    ).fit(X_fit[: args.transfer_rows])
    graphs = {
        "forest": forest_graph(forest, args.features),
        "student": to_onnx(student, X_fit[:5], target_opset=OPSET),
        STOCK: stock_forest_graph(forest, args.features),
    }

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for i, (name, model) in enumerate(graphs.items()):
            paths[name] = Path(tmp) / f"model{i}.onnx"
            onnx.save(model, paths[name])
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        loads = median_times({name: lambda p=p: session(p, 1) for name, p in paths.items()}, 3)
        checks = check_graphs(paths, forest, student, X_serve[:2000])
        speed_rows, ratios = [], {}
        for n_threads in threads:
            sessions = {name: session(p, n_threads) for name, p in paths.items()}
            for batch in batches:
                rows = X_serve[:batch]
                # The stock forest (no uncertainty) is a reference on small batches only:
                # on large ones it costs as much time as the forest itself.
                jobs = {
                    name: lambda s=s, r=rows: s.run(None, {"X": r})
                    for name, s in sessions.items()
                    if name != STOCK or batch <= STOCK_MAX_ROWS
                }
                for fn in jobs.values():
                    fn()  # warm-up, untimed
                # Small batches are repeated more, up to about the time of the large ones.
                repeats = max(args.repeats, min(50, args.repeats * max(batches) // batch // 10))
                t = median_times(jobs, repeats)
                ratios[(n_threads, batch)] = t["forest"] / t["student"]
                speed_rows.append(
                    (
                        n_threads,
                        f"{batch:,}",
                        *(f"{batch / t[name]:,.0f}" if name in t else "-" for name in graphs),
                        f"**{ratios[(n_threads, batch)]:.1f}x**",
                    )
                )

    size_ratio = sizes["forest"] / sizes["student"]
    targets = [
        (
            f"student >= {TARGETS['speed']:.0f}x faster ({n} thread{'s' * (n > 1)}, {b:,} rows)",
            f"{r:.1f}x",
            "met" if r >= TARGETS["speed"] else "not met",
        )
        for (n, b), r in ratios.items()
    ]
    targets.append(
        (
            f"student >= {TARGETS['size']:.0f}x smaller (ONNX file)",
            f"{size_ratio:.0f}x",
            "met" if size_ratio >= TARGETS["size"] else "not met",
        )
    )
    targets.append(
        (
            f"student session loads in < {TARGETS['load_s']:.0f} s",
            f"{loads['student']:.3f} s",
            "met" if loads["student"] < TARGETS["load_s"] else "not met",
        )
    )
    names = list(graphs)
    report = "\n".join(
        [
            f"# ONNX serving: a {args.trees}-tree forest versus its Hydra student in onnxruntime\n",
            provenance(
                "benchmarks/onnx_serving.py",
                sys.argv[1:],
                "0 (data, forest, student)",
                start,
                extra=[
                    f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, opset {OPSET}",
                    f"data: make_classification, {args.features} features, {args.classes} "
                    f"classes; forest fitted on {args.fit_rows:,} rows, student on "
                    f"{args.transfer_rows:,} (default architecture, head_rank "
                    f"{student.head_rank_}, 1 + 1 epochs)",
                ],
            ),
            "",
            "## Targets (issue 16)\n",
            table(["target", "measured", "result"], targets),
            "## Throughput of the uncertainty (rows/s, one session.run per batch)\n",
            "Forest and student compute the decomposition in the graph.\n",
            table(["threads", "rows", *names, "student / forest"], speed_rows),
            "## Files and loading\n",
            table(
                ["model", "ONNX file (MB)", "session load (s, 1 thread)"],
                [(n, f"{sizes[n] / MB:.2f}", f"{loads[n]:.3f}") for n in names],
            ),
            "## Check: graph versus Python predict_uncertainty (max abs difference, 2,000 rows)\n",
            table(["model", "max difference (nats)"], checks),
        ]
    )
    print(report)
    if args.output:
        write_report(args.output, report)


if __name__ == "__main__":
    main()
