"""Export a fitted Hydra student to ONNX: one graph from the raw rows to the uncertainty.

The student's network, with its input scaling and missing-value fills, is
wrapped in a torch module that also computes every public prediction (the
formulas of ``predict``, ``predict_proba``, ``predict_uncertainty``) and is
exported by torch's TorchScript exporter (``dynamo=False``): the default
dynamo exporter needs ``onnxscript``, and this one needs only ``onnx``. A
Pipeline teacher's preprocessing is converted by skl2onnx and merged in
front, so the graph takes the raw table.
"""

import io
import json
import warnings

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.validation import check_is_fitted

from ._onnx_graph import ClassifierGraph, RegressorGraph

__all__ = ["onnx_inputs", "to_onnx"]

#: ONNX opset of the exported graph by default: run by onnxruntime >= 1.14.
DEFAULT_OPSET = 18
#: Opsets the export supports: the ops below 13 differ (Softmax, Split, Squeeze),
#: and torch's TorchScript exporter stops at 20.
OPSET_RANGE = (13, 20)

CLASSIFIER_OUTPUTS = ("label", "probabilities", "total", "aleatoric", "epistemic")
REGRESSOR_OUTPUTS = ("mean", "std", "total", "aleatoric", "epistemic")

_INSTALL = 'pip install "skhydra[onnx]"'
_STUDENT_INPUT = "X"
_LABEL_INDEX = "label_index"


def to_onnx(estimator, X, *, target_opset=None):
    """Export a fitted Hydra student, with its uncertainty, as one ONNX graph.

    The graph computes, in float32, what the estimator's methods compute:
    for a classifier the outputs ``label`` (``predict``: the actual
    ``classes_``, numbers or strings), ``probabilities``
    (``predict_proba``), ``total``, ``aleatoric`` and ``epistemic``
    (``predict_uncertainty``); for a regressor ``mean``, ``std``
    (``predict(X, return_std=True)``), ``total``, ``aleatoric`` and
    ``epistemic``. The input scaling and the learned fills of missing values
    are inside the graph, and so is the preprocessing of a Pipeline teacher
    (converted with skl2onnx), so the graph takes the rows ``predict`` takes.
    The batch dimension is dynamic.

    Parameters
    ----------
    estimator : HydraDistilledClassifier or HydraDistilledRegressor
        A fitted student, or its ``without_teacher()`` copy.
    X : array-like or DataFrame
        A few rows as ``predict`` takes them; they fix the graph's inputs
        (names, types, row shape), not its batch size. A DataFrame gives a
        Pipeline teacher's preprocessing one input of shape ``(n, 1)`` per
        column (float columns as float32, integer and boolean columns as
        int64, others as strings), named after the column as skl2onnx makes
        it an identifier (``"area (m2)"`` becomes ``"area__m2_"``; the graph's
        metadata records the columns for :func:`onnx_inputs`). Otherwise the
        graph has one input, ``"X"``.
    target_opset : int, default=None
        ONNX opset of the graph, from 13 to 20; None uses 18.

    Returns
    -------
    onnx.ModelProto
        The graph; run it with :mod:`onnxruntime`, feeding the inputs built by
        :func:`onnx_inputs`.

    Raises
    ------
    ValueError
        When a step of a Pipeline teacher's preprocessing cannot be converted
        (the error names the step), or for a bad ``target_opset``.

    Notes
    -----
    The outputs are float32 (the label has the dtype of ``classes_``), so
    they match the estimator's float64 results up to float32 rounding
    (relative 1e-6 or better). A student trained with
    ``precision="bfloat16"`` is exported in float32: the graph runs its
    float32 weights without the bfloat16 autocast, so its outputs differ
    from the estimator's predictions by bfloat16 rounding (about 1e-2
    relative). A regressor whose aleatoric part is unknown (point members and
    no ``y``) gives NaN ``std``, ``total`` and ``aleatoric``, as it does in
    Python.

    Examples
    --------
    >>> import onnxruntime
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhydra import HydraDistilledClassifier, onnx_inputs, to_onnx
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    >>> hydra = HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=5, max_epochs=10, random_state=0
    ... ).fit(X)
    >>> model = to_onnx(hydra, X[:5])
    >>> [output.name for output in model.graph.output]
    ['label', 'probabilities', 'total', 'aleatoric', 'epistemic']
    >>> session = onnxruntime.InferenceSession(model.SerializeToString())
    >>> label, proba, total, aleatoric, epistemic = session.run(None, onnx_inputs(model, X))
    >>> bool((label == hydra.predict(X)).all())
    True
    >>> float(abs(epistemic - hydra.predict_uncertainty(X)["epistemic"]).max()) < 1e-5
    True
    """
    onnx = _import("onnx")
    from ._base import BaseHydra

    if not isinstance(estimator, BaseHydra):
        raise TypeError(
            "to_onnx exports a fitted HydraDistilledClassifier or HydraDistilledRegressor, "
            f"got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    opset = _check_opset(target_opset)
    # Validates X as predict does (and applies a Pipeline teacher's preprocessing):
    # the traced rows are the student's own input.
    X_student = estimator._student_input(X)
    if estimator._task == "classifier":
        graph, names = ClassifierGraph(estimator), CLASSIFIER_OUTPUTS
    else:
        graph, names = RegressorGraph(estimator), REGRESSOR_OUTPUTS
        if not estimator.target_encoding_.aleatoric_known:
            warnings.warn(
                "The aleatoric uncertainty of this student is unknown: the graph's std, "
                "total and aleatoric outputs are NaN (refit with y to learn it).",
                UserWarning,
                stacklevel=2,
            )
    model = _export_torch(graph, X_student[:8], names, opset)
    if estimator._task == "classifier":
        model = _gather_labels(model, estimator.classes_)
    preprocessor = estimator.teacher_.preprocessor
    if preprocessor is not None:
        model = _prepend(_convert_preprocessor(preprocessor, X, opset), model)
        _record_columns(model, X)
    model.producer_name = "skhydra"
    model.producer_version = _version()
    model.doc_string = (
        f"{type(estimator).__name__} exported by skhydra.to_onnx; outputs: {', '.join(names)}."
    )
    onnx.checker.check_model(model)
    return model


def onnx_inputs(model, X):
    """The input dict for :mod:`onnxruntime` of a graph made by :func:`to_onnx`.

    Parameters
    ----------
    model : onnx.ModelProto or onnxruntime.InferenceSession
        The exported graph, or a session running it.
    X : array-like or DataFrame
        Rows as the estimator's ``predict`` takes them. For a graph with one
        input per column (a Pipeline teacher exported from a DataFrame), a
        DataFrame with those columns.

    Returns
    -------
    dict of str to ndarray
        Arrays cast to the graph's input types: ``{"X": float32 rows}``, or
        one ``(n_samples, 1)`` array per column (strings as ``object``).

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from onnx import TensorProto, helper
    >>> from skhydra import onnx_inputs
    >>> graph = helper.make_graph([], "g", [
    ...     helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1]),
    ...     helper.make_tensor_value_info("city", TensorProto.STRING, [None, 1]),
    ... ], [])
    >>> feeds = onnx_inputs(helper.make_model(graph), pd.DataFrame({"age": [31, 45],
    ...                                                             "city": ["Oslo", "Rome"]}))
    >>> {name: (array.dtype.name, array.shape) for name, array in feeds.items()}
    {'age': ('float32', (2, 1)), 'city': ('object', (2, 1))}
    """
    specs = _input_specs(model)
    columns_of = _recorded_columns(model)
    if len(specs) == 1 and not columns_of:
        ((name, dtype),) = specs
        array = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        return {name: _cast(array, dtype)}
    wanted = {name: columns_of.get(name, name) for name, _ in specs}
    columns = getattr(X, "columns", None)
    missing = [c for c in wanted.values() if columns is None or c not in columns]
    if missing:
        raise ValueError(
            f"The graph takes one input per column ({list(wanted.values())}); pass X "
            f"as a DataFrame with these columns (missing: {missing})."
        )
    return {name: _cast(X[wanted[name]].to_numpy().reshape(-1, 1), dtype) for name, dtype in specs}


def _export_torch(graph, rows, names, opset):
    onnx = _import("onnx")
    outputs = [_LABEL_INDEX, *names[1:]] if names[0] == "label" else list(names)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which
        # needs onnxscript; it is the exporter that runs with onnx alone.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            (torch.as_tensor(rows, dtype=torch.float32),),
            buffer,
            dynamo=False,
            input_names=[_STUDENT_INPUT],
            output_names=outputs,
            dynamic_axes={name: {0: "n_samples"} for name in [_STUDENT_INPUT, *outputs]},
            opset_version=opset,
        )
    return onnx.load_from_string(buffer.getvalue())


def _gather_labels(model, classes):
    """Replace the output ``label_index`` by the labels: ``classes[label_index]``."""
    onnx = _import("onnx")
    from onnx import helper, numpy_helper

    classes = np.asarray(classes)
    if classes.dtype.kind in "OUS":
        classes = classes.astype(str).astype(object)
    table = numpy_helper.from_array(classes, name="classes")
    graph = model.graph
    graph.initializer.append(table)
    graph.node.append(helper.make_node("Gather", ["classes", _LABEL_INDEX], ["label"], axis=0))
    outputs = [o for o in graph.output if o.name != _LABEL_INDEX]
    label = helper.make_tensor_value_info("label", table.data_type, ["n_samples"])
    del graph.output[:]
    graph.output.extend([label, *outputs])
    return onnx.shape_inference.infer_shapes(model)


# -- a Pipeline teacher's preprocessing --------------------------------------------


def _convert_preprocessor(preprocessor, X, opset):
    """The preprocessing as an ONNX graph with one float32 output, at ``opset``."""
    onnx = _import("onnx")
    skl2onnx = _import("skl2onnx")
    from onnx import TensorProto, helper

    try:
        model = skl2onnx.convert_sklearn(
            preprocessor, initial_types=_initial_types(X), target_opset=opset
        )
    except Exception as exc:
        raise ValueError(_unsupported_message(preprocessor, exc)) from exc
    graph = model.graph
    if len(graph.output) != 1:
        raise ValueError(
            f"The Pipeline teacher's preprocessing gives {len(graph.output)} ONNX outputs; "
            "the student takes one feature matrix."
        )
    # The student's network computes in float32, as in Python after _student_array.
    graph.node.append(
        helper.make_node("Cast", [graph.output[0].name], ["features"], to=TensorProto.FLOAT)
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, None))
    # skl2onnx uses the lowest opset its converters need; the merged graph has one.
    main = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if main != opset:
        model = onnx.version_converter.convert_version(model, opset)
    return model


def _initial_types(X):
    """skl2onnx's input types for rows like ``X``: one per DataFrame column, else one."""
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    def tensor_type(kind, width):
        if kind == "f":
            return FloatTensorType([None, width])
        if kind in "iub":
            return Int64TensorType([None, width])
        return StringTensorType([None, width])

    if hasattr(X, "columns"):
        return [(str(c), tensor_type(X[c].dtype.kind, 1)) for c in X.columns]
    X = np.asarray(X)
    return [(_STUDENT_INPUT, tensor_type(X.dtype.kind, X.shape[1]))]


def _leaf_steps(step, name):
    """``(name, transformer)`` of every leaf step of a (nested) Pipeline, with sklearn names."""
    if isinstance(step, Pipeline):
        for sub, inner in step.steps:
            yield from _leaf_steps(inner, f"{name}__{sub}" if name else sub)
    elif isinstance(step, ColumnTransformer):
        for sub, inner, _ in step.transformers_:
            if not isinstance(inner, str):  # "drop", "passthrough"
                yield from _leaf_steps(inner, f"{name}__{sub}" if name else sub)
    elif isinstance(step, FeatureUnion):
        for sub, inner in step.transformer_list:
            if not isinstance(inner, str):
                yield from _leaf_steps(inner, f"{name}__{sub}" if name else sub)
    elif step is not None and not isinstance(step, str):
        yield name, step


def _unsupported_message(preprocessor, exc):
    """Name the step skl2onnx could not convert: one without a converter, or named by the error."""
    from skl2onnx import get_model_alias

    steps = list(_leaf_steps(preprocessor, ""))
    culprit = None
    for name, step in steps:
        try:
            get_model_alias(type(step))
        except RuntimeError:
            culprit = name, step
            break
    if culprit is None:
        culprit = next(((n, s) for n, s in steps if type(s).__name__ in str(exc)), None)
    where = "a step" if culprit is None else f"step {culprit[0]!r} ({type(culprit[1]).__name__})"
    return (
        f"Cannot export the Pipeline teacher's preprocessing to ONNX: skl2onnx cannot convert "
        f"{where}: {exc} Use steps that skl2onnx converts, or register a converter with "
        "skl2onnx.update_registered_converter."
    )


def _prepend(front, student):
    """One graph: ``front``'s inputs, its output fed to the student's input."""
    onnx = _import("onnx")
    from onnx import compose

    front = compose.add_prefix(front, "preprocess_", rename_inputs=False)
    student = compose.add_prefix(student, "student_", rename_outputs=False)
    ir_version = max(front.ir_version, student.ir_version)
    front.ir_version = student.ir_version = ir_version
    # skl2onnx may list a domain twice; merge_models takes each domain once.
    for model in (front, student):
        versions = {(o.domain or "ai.onnx", o.version) for o in model.opset_import}
        del model.opset_import[:]
        model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in sorted(versions))
    return compose.merge_models(
        front, student, io_map=[("preprocess_features", f"student_{_STUDENT_INPUT}")]
    )


#: Metadata key of the graph's input names -> the DataFrame's column names (JSON).
COLUMNS_KEY = "skhydra_input_columns"


def _record_columns(model, X):
    """Record which column each input takes: skl2onnx makes column names identifiers."""
    if not hasattr(X, "columns"):
        return
    names = _graph_inputs(model)
    # skl2onnx keeps every declared input, in order (also those no step uses).
    if len(names) == X.shape[1]:
        entry = model.metadata_props.add()
        entry.key = COLUMNS_KEY
        entry.value = json.dumps(dict(zip(names, map(str, X.columns), strict=True)))


def _recorded_columns(model):
    if hasattr(model, "get_modelmeta"):  # an onnxruntime session
        value = model.get_modelmeta().custom_metadata_map.get(COLUMNS_KEY)
    else:
        value = next(
            (p.value for p in getattr(model, "metadata_props", ()) if p.key == COLUMNS_KEY), None
        )
    return {} if value is None else json.loads(value)


def _graph_inputs(model):
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


# -- small helpers ------------------------------------------------------------------


def _check_opset(target_opset):
    if target_opset is None:
        return DEFAULT_OPSET
    low, high = OPSET_RANGE
    if isinstance(target_opset, bool) or not isinstance(target_opset, (int, np.integer)):
        raise TypeError(f"target_opset must be an int or None, got {target_opset!r}.")
    if not low <= target_opset <= high:
        raise ValueError(
            f"target_opset={target_opset} is not supported; use an opset from {low} to {high} "
            f"(torch's TorchScript exporter stops at {high})."
        )
    return int(target_opset)


def _input_specs(model):
    """``[(name, numpy dtype)]`` of the graph's inputs."""
    if hasattr(model, "get_inputs"):  # an onnxruntime session
        types = {
            "tensor(float)": np.float32,
            "tensor(double)": np.float64,
            "tensor(int64)": np.int64,
            "tensor(int32)": np.int32,
            "tensor(bool)": np.bool_,
            "tensor(string)": np.object_,
        }
        return [(i.name, types[i.type]) for i in model.get_inputs()]
    if not hasattr(model, "graph"):
        raise TypeError(
            "model must be an onnx.ModelProto or an onnxruntime.InferenceSession, got "
            f"{type(model).__name__}."
        )
    from onnx.helper import tensor_dtype_to_np_dtype

    initializers = {i.name for i in model.graph.initializer}
    return [
        (i.name, tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        for i in model.graph.input
        if i.name not in initializers
    ]


def _cast(array, dtype):
    if np.dtype(dtype) == np.object_:
        return array.astype(str).astype(object)
    return np.ascontiguousarray(array, dtype=dtype)


def _import(name):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"skhydra.to_onnx needs the package {name!r}; install it with {_INSTALL}."
        ) from exc


def _version():
    from . import __version__

    return __version__
