"""Saving and loading fitted students in a format whose loading runs no code.

A ``.skhydra`` file is a zip archive of three parts, none of them a pickle:

- ``skhydra.json``: the format version, the estimator class (one of skhydra's
  two), its JSON-representable constructor parameters, the fitted attributes
  (arrays with their dtype), the configuration that rebuilds the
  :class:`~skhydra.nn.HydraModule`, and what prediction needs of the teacher;
- ``weights.pt``: the module's ``state_dict``, written by :func:`torch.save`
  and read back with ``torch.load(..., weights_only=True)``;
- ``preprocessor.skops``: a Pipeline teacher's preprocessing, through
  :mod:`skops.io`, whose types are checked against a trusted list first.

The ensemble is not saved: a loaded student is like
``estimator.without_teacher()``.
"""

import dataclasses
import importlib
import io
import json
import os
import warnings
import zipfile

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from skorch.history import History

from ._base import resolve_device
from ._body import make_body
from ._classifier import ClassTargets, HydraDistilledClassifier
from ._jsonvalues import decode, encode, is_json
from ._regressor import GaussianTargets, HydraDistilledRegressor
from ._training import HydraNet
from .ensembles import Teacher
from .nn import FillMissing, HydraModule, PiecewiseLinear

__all__ = ["FORMAT_VERSION", "dump", "load"]

#: Version of the file layout this skhydra writes; ``load`` reads this and older versions.
FORMAT_VERSION = 1

_CONFIG = "skhydra.json"
_WEIGHTS = "weights.pt"
_PREPROCESSOR = "preprocessor.skops"
#: A fixed timestamp for the archive's entries: the same student gives the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# Only these classes are ever built by ``load``: the file names one, it never names code.
_ESTIMATORS = {cls.__name__: cls for cls in (HydraDistilledClassifier, HydraDistilledRegressor)}
_ENCODINGS = {cls.__name__: cls for cls in (ClassTargets, GaussianTargets)}
#: Fitted attributes stored outside ``attributes`` (or, for ``ensemble_``, not at all).
_SPECIAL_ATTRIBUTES = {"ensemble_", "teacher_", "target_encoding_", "net_", "device_"}
_SKOPS_MISSING = (
    'Saving or loading a student with a Pipeline teacher needs skops: pip install "skhydra[skops]"'
)


# -- dump -----------------------------------------------------------------------


def dump(estimator, file):
    """Save a fitted student to a ``.skhydra`` file that loads without running code.

    The file holds the network's weights, the fitted attributes needed to
    predict, the estimator's JSON-representable parameters and, for a
    Pipeline teacher, its preprocessing steps (through :mod:`skops.io`). The
    ensemble is not saved: :func:`load` returns the equivalent of
    ``estimator.without_teacher()``. Use pickle or joblib to keep the
    ensemble too.

    Parameters
    ----------
    estimator : HydraDistilledClassifier or HydraDistilledRegressor
        A fitted student.
    file : str, path-like or binary file object
        Where to write; a file object must be open for binary writing.

    Raises
    ------
    NotFittedError
        The estimator is not fitted.
    TypeError
        A parameter that is needed to rebuild the network cannot be saved:
        a custom body passed as an instance, a body class that cannot be
        imported by its name, or ``body_params`` that are not JSON.

    Warns
    -----
    UserWarning
        Parameters that are not JSON-representable (``callbacks``,
        ``accelerator``, objects in ``skorch_params``, a ``RandomState``)
        are not saved; the loaded estimator has their defaults.

    See Also
    --------
    load : Load a student saved by this function.

    Notes
    -----
    Prediction does not need the dropped parameters, so the loaded student
    predicts exactly like the saved one; refitting it uses the defaults.

    Examples
    --------
    >>> import io
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> import skhydra
    >>> X, y = load_iris(return_X_y=True)
    >>> forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    >>> hydra = skhydra.HydraDistilledClassifier(
    ...     forest, body_layer_sizes=(16,), phase1_epochs=3, max_epochs=6, random_state=0
    ... ).fit(X)
    >>> buffer = io.BytesIO()
    >>> skhydra.dump(hydra, buffer)
    >>> loaded = skhydra.load(io.BytesIO(buffer.getvalue()))
    >>> bool((loaded.predict_proba(X) == hydra.predict_proba(X)).all())
    True
    """
    kind = type(estimator).__name__
    if _ESTIMATORS.get(kind) is not type(estimator):
        raise TypeError(
            f"skhydra.dump saves HydraDistilledClassifier and HydraDistilledRegressor "
            f"students, got {kind}. Save other objects (e.g. a Pipeline around a student) "
            "with skops.io, pickle or joblib."
        )
    check_is_fitted(estimator)
    params, dropped = _saved_params(estimator)
    config = {
        "format": "skhydra",
        "format_version": FORMAT_VERSION,
        "skhydra_version": _skhydra_version(),
        "torch_version": str(torch.__version__),
        "estimator": kind,
        "params": params,
        "dropped_params": dropped,
        "body": _body_config(estimator),
        "module": _module_config(estimator.net_.module_, estimator.input_shape_),
        "net": _net_config(estimator.net_),
        "attributes": _attributes(estimator),
        "teacher": _teacher_config(estimator.teacher_),
        "target_encoding": {
            "class": type(estimator.target_encoding_).__name__,
            "fields": encode(_fields(estimator.target_encoding_)),
        },
        "trained_device": str(estimator.device_),
    }
    weights = io.BytesIO()
    # On the CPU, so that a student trained on a GPU loads anywhere.
    state = {k: v.detach().cpu() for k, v in estimator.net_.module_.state_dict().items()}
    torch.save(state, weights)
    entries = {
        _CONFIG: json.dumps(config, indent=1).encode("utf-8"),
        _WEIGHTS: weights.getvalue(),
    }
    if estimator.teacher_.preprocessor is not None:
        entries[_PREPROCESSOR] = _skops().dumps(estimator.teacher_.preprocessor)
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def _skhydra_version():
    from . import __version__

    return __version__


def _skops():
    try:
        import skops.io
    except ImportError as exc:
        raise ImportError(_SKOPS_MISSING) from exc
    return skops.io


def _saved_params(estimator):
    """The JSON-representable constructor parameters, and the names of the others."""
    params, dropped = {}, []
    for name, value in estimator.get_params(deep=False).items():
        if name in ("ensemble", "body"):  # the ensemble is not saved; the body has its entry
            continue
        if name == "body_params" and not is_json(value):
            raise TypeError(
                f"body_params={value!r} cannot be saved: skhydra.dump stores the body's "
                "constructor arguments as JSON (numbers, strings, lists, dicts). Use pickle "
                "or joblib to save this student."
            )
        if is_json(value):
            params[name] = encode(value)
        else:
            dropped.append(name)
    if dropped:
        warnings.warn(
            f"The parameters {dropped} are not JSON-representable and are not saved; the "
            "loaded student predicts the same but has their default values (refitting it "
            "uses them). Use pickle or joblib to keep them.",
            UserWarning,
            stacklevel=3,
        )
    return params, dropped


def _class_path(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_path(path):
    module_name, _, qualname = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _body_config(estimator):
    """``None`` for the MLP body, else the import path of the body class."""
    body = estimator.body
    if body is None:
        return None
    if not isinstance(body, type):
        raise TypeError(
            f"The student's body is an instance of {type(body).__name__}; skhydra.dump can "
            "only record a body class (body=MyBody, body_params={...}), which load rebuilds "
            "by its import path. Pass the class instead, or save this student with pickle "
            "or joblib."
        )
    path = _class_path(body)
    try:
        found = _import_path(path)
    except (ImportError, AttributeError):
        found = None
    if found is not body:
        raise TypeError(
            f"The body class {body.__qualname__} cannot be imported as {path!r} (define it at "
            "the top level of an importable module), so a loaded file could not rebuild it. "
            "Save this student with pickle or joblib instead."
        )
    return {"path": path}


def _module_config(module, input_shape):
    """What rebuilds the module's architecture; its values come from ``weights.pt``."""
    heads = module.heads.layers
    fill = module.fill
    config = {
        "input_shape": [int(n) for n in input_shape],
        "loc_shape": list(module.scaler.loc.shape),
        "scale_shape": list(module.scaler.scale.shape),
        "head_layer_sizes": [int(layer.weight.shape[2]) for layer in heads[:-1]],
        "n_outputs": int(heads[-1].weight.shape[2]),
        "n_heads": int(module.n_heads),
        "head_rank": module.head_rank,
        "missing": fill.missing.tolist() if isinstance(fill, FillMissing) else None,
    }
    encode = getattr(module, "encode", None)
    if isinstance(encode, PiecewiseLinear):
        # Bins per input column (0: unencoded); the edges are buffers in weights.pt.
        bins = torch.bincount(encode.feature, minlength=encode.in_features)
        config["encoding_bins"] = [int(n) for n in bins]
    if isinstance(module.body, torch.nn.Sequential) and all(
        isinstance(layer, (torch.nn.Linear, torch.nn.ReLU)) for layer in module.body
    ):
        config["body_layer_sizes"] = [
            layer.out_features for layer in module.body if isinstance(layer, torch.nn.Linear)
        ]
    return config


def _net_config(net):
    # The epochs' scores, not each batch's: the history stays small.
    history = [{k: v for k, v in epoch.items() if k != "batches"} for epoch in net.history]
    return {
        "batch_size": int(net.batch_size),
        "lr": float(net.lr),
        "history": history if is_json(history) else None,
    }


def _fields(obj, skip=()):
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in skip}


def _attributes(estimator):
    attributes, skipped = {}, []
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name in _SPECIAL_ATTRIBUTES:
            continue
        if is_json(value):
            attributes[name] = encode(value)
        else:
            skipped.append(name)
    if skipped:
        warnings.warn(
            f"The fitted attributes {skipped} cannot be saved in the JSON of a .skhydra "
            "file and are left out; prediction does not use them.",
            UserWarning,
            stacklevel=3,
        )
    return attributes


def _teacher_config(teacher):
    fields = _fields(teacher, skip=("ensemble", "members", "preprocessor"))
    return {
        "fields": encode(fields),
        "preprocessor": teacher.preprocessor is not None,
    }


# -- load -----------------------------------------------------------------------


def load(file, *, trusted=(), device="cpu"):
    """Load a student saved by :func:`dump`, without unpickling anything.

    The estimator class comes from a fixed list (skhydra's two students),
    the weights from ``torch.load(..., weights_only=True)``, and a Pipeline
    teacher's preprocessing from :func:`skops.io.loads` after its types are
    checked: types outside skops' defaults (scikit-learn, NumPy, SciPy) must
    be listed in ``trusted``, as must the class of a custom body.

    Parameters
    ----------
    file : str, path-like or binary file object
        A ``.skhydra`` file; a file object must be open for binary reading
        and seekable (e.g. :class:`io.BytesIO`).
    trusted : sequence of str, default=()
        Names of code the file may use: the import path of a custom body
        class (``"package.module:ClassName"``, as in the error message) and
        types of the preprocessing that skops does not trust by default
        (as :func:`skops.io.get_untrusted_types` names them). Trust only
        code you would import yourself.
    device : str, default="cpu"
        Where the network goes: ``"cpu"``, ``"auto"``, ``"cuda"`` or
        ``"cuda:<index>"``. A student trained on a GPU loads on the CPU.

    Returns
    -------
    estimator : HydraDistilledClassifier or HydraDistilledRegressor
        A fitted student that predicts like the saved one. Like
        ``without_teacher()``: ``ensemble`` and ``ensemble_`` are None, so
        refitting it fits the default ensemble unless ``ensemble`` is set
        first. ``device_`` is ``device``; ``net_.history`` holds the saved
        epochs' scores.

    Raises
    ------
    ValueError
        The file is not a ``.skhydra`` file, was written by a newer format
        version, or needs code that is not in ``trusted``.
    ImportError
        The file holds preprocessing and skops is not installed.

    See Also
    --------
    dump : Save a fitted student.

    Examples
    --------
    >>> import io
    >>> from sklearn.datasets import load_diabetes
    >>> import skhydra
    >>> X, y = load_diabetes(return_X_y=True)
    >>> hydra = skhydra.HydraDistilledRegressor(
    ...     body_layer_sizes=(16,), phase1_epochs=3, max_epochs=6, random_state=0
    ... ).fit(X, y)
    >>> buffer = io.BytesIO()
    >>> skhydra.dump(hydra, buffer)
    >>> loaded = skhydra.load(io.BytesIO(buffer.getvalue()))
    >>> loaded.ensemble_ is None, bool((loaded.predict(X) == hydra.predict(X)).all())
    (True, True)
    """
    trusted = _check_trusted(trusted)
    entries = _read_archive(file)
    config = _read_config(entries[_CONFIG])
    cls = _ESTIMATORS.get(config["estimator"])
    if cls is None:
        raise ValueError(f"The file holds an unknown estimator {config['estimator']!r}.")
    body_path = config["body"]["path"] if config["body"] else None
    preprocessing = entries.get(_PREPROCESSOR) if config["teacher"]["preprocessor"] else None
    _check_trust(body_path, preprocessing, trusted)

    estimator = cls(ensemble=None, **_loaded_params(cls, config, body_path))
    device = resolve_device(device)
    module = _rebuild_module(config["module"], estimator, entries[_WEIGHTS])
    encoding = _ENCODINGS[config["target_encoding"]["class"]](
        **decode(config["target_encoding"]["fields"])
    )
    preprocessor = None
    if preprocessing is not None:
        skops_io = _skops()
        # Every type outside skops' defaults was checked against ``trusted`` above.
        preprocessor = skops_io.loads(
            preprocessing, trusted=skops_io.get_untrusted_types(data=preprocessing)
        )
    # The fitted attributes, set together as fit sets them.
    for name, value in config["attributes"].items():
        setattr(estimator, name, decode(value))
    estimator.ensemble_ = None
    estimator.teacher_ = Teacher(
        ensemble=None,
        members=(),
        preprocessor=preprocessor,
        **decode(config["teacher"]["fields"]),
    )
    estimator.target_encoding_ = encoding
    estimator.net_ = _served_net(module, encoding, config["net"], estimator.precision, device)
    estimator.device_ = device
    return estimator


def _loaded_params(cls, config, body_path):
    """The saved parameters this version has (a newer file may hold others)."""
    params = {k: decode(v) for k, v in config["params"].items()}
    unknown = sorted(set(params) - set(cls().get_params(deep=False)))
    if unknown:
        warnings.warn(
            f"The file sets parameters {unknown} that this version of {cls.__name__} "
            "does not have; they are ignored.",
            UserWarning,
            stacklevel=3,
        )
    params = {k: v for k, v in params.items() if k not in unknown}
    if body_path is not None:
        params["body"] = _import_path(body_path)
    return params


def _check_trusted(trusted):
    if isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted):
        raise TypeError(
            f"trusted must be a list of str (names of types or classes), got {trusted!r}."
        )
    return set(trusted)


def _read_archive(file):
    if isinstance(file, (str, os.PathLike)) and not os.path.exists(file):
        raise FileNotFoundError(f"No such file: {os.fspath(file)!r}")
    try:
        with zipfile.ZipFile(file) as archive:
            entries = {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile as exc:
        raise ValueError(f"Not a .skhydra file (not a zip archive): {exc}") from exc
    if _CONFIG not in entries or _WEIGHTS not in entries:
        raise ValueError(
            f"Not a .skhydra file: the archive lacks {_CONFIG} or {_WEIGHTS} "
            f"(it holds {sorted(entries)})."
        )
    return entries


def _read_config(data):
    config = json.loads(data.decode("utf-8"))
    if not isinstance(config, dict) or config.get("format") != "skhydra":
        raise ValueError(f"Not a .skhydra file: {_CONFIG} does not describe a skhydra student.")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"The file's format_version {version!r} is not an integer.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"The file has format version {version} (written by skhydra "
            f"{config.get('skhydra_version')}); this skhydra ({_skhydra_version()}) reads "
            f"format versions up to {FORMAT_VERSION}. Upgrade skhydra to load it."
        )
    return config


def _check_trust(body_path, preprocessing, trusted):
    """Refuse, naming all of them, the code the file needs and the user did not trust."""
    needed = []
    if body_path is not None and body_path not in trusted:
        needed.append(body_path)
    if preprocessing is not None:
        needed += [t for t in _skops().get_untrusted_types(data=preprocessing) if t not in trusted]
    if needed:
        raise ValueError(
            f"The file needs code that is not trusted: {needed}. Loading them imports and "
            "runs that code (a custom body class, or types in the Pipeline teacher's "
            "preprocessing). If you trust the file's source, pass "
            f"trusted={needed!r} to skhydra.load."
        )


def _placeholder_edges(bins):
    """Edges with the saved number of bins per column; their values come from the weights."""
    if bins is None:
        return None
    return [None if n == 0 else np.arange(n + 1.0) for n in bins]


def _rebuild_module(config, estimator, weights):
    body = make_body(estimator.body, estimator.body_params)
    # Building the module draws initial weights, which the saved ones replace: the
    # user's global torch random stream is left untouched.
    with torch.random.fork_rng(devices=[]):
        module = HydraModule(
            torch.zeros(config["loc_shape"]),
            torch.ones(config["scale_shape"]),
            tuple(config.get("body_layer_sizes", ())),
            tuple(config["head_layer_sizes"]),
            config["n_outputs"],
            n_heads=config["n_heads"],
            body=body,
            input_shape=tuple(config["input_shape"]),
            missing=config["missing"],
            head_rank=config["head_rank"],
            edges=_placeholder_edges(config.get("encoding_bins")),
        )
    state = torch.load(io.BytesIO(weights), weights_only=True, map_location="cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"The weights in the file do not fit the network its configuration describes: {exc}"
        ) from exc
    return module


def _served_net(module, encoding, config, precision, device):
    """A plain, initialised skorch net around the loaded module (as training returns)."""
    net = HydraNet(
        module=module,
        criterion=encoding.criterion(),
        optimizer=torch.optim.AdamW,
        lr=config["lr"],
        batch_size=config["batch_size"],
        train_split=None,
        device=device,
        precision=precision,
    )
    net.initialize()
    net.history = History(config.get("history") or [])
    return net
