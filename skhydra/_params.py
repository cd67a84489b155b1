"""The estimators' parameters, declared once: default, constraints and documentation.

Each parameter is one :class:`Param` in :data:`PARAMS`, in signature order.
:func:`declare_parameters` builds each estimator's ``__init__``, its
``_parameter_constraints`` and the "Parameters" and "Attributes" sections of
its docstring from the table, so a parameter is added, renamed or documented
in one place.
"""

from dataclasses import dataclass
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions

from ._storage import parse_bytes

__all__ = ["PARAMS", "Param", "declare_parameters", "explicit_flag"]


def explicit_flag(value):
    """A bool-or-``"auto"`` parameter's value: None for ``"auto"``, else a bool.

    numpy booleans (as a search's grid gives them) count as booleans.

    Examples
    --------
    >>> import numpy as np
    >>> from skhydra._params import explicit_flag
    >>> explicit_flag("auto"), explicit_flag(np.True_), explicit_flag(False)
    (None, True, False)
    """
    return None if isinstance(value, str) else bool(value)


class _Satisfying(Options):
    """A constraint given by a predicate.

    scikit-learn's parameter validation takes only its own constraint types;
    this one subclasses ``Options`` to carry a predicate and a description.
    """

    def __init__(self, predicate, description):
        super().__init__(object, set())
        self.predicate = predicate
        self.description = description

    def is_satisfied_by(self, val):
        return self.predicate(val)

    def __str__(self):
        return self.description


def _is_sizes(value):
    return isinstance(value, (tuple, list)) and all(
        isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in value
    )


def _is_byte_string(value):
    if not isinstance(value, str):
        return False
    try:
        parse_bytes(value)
    except ValueError:
        return False
    return True


_SIZES = _Satisfying(_is_sizes, "a tuple of positive ints")
_BYTES = _Satisfying(_is_byte_string, "a str such as '2GB' or '512MiB'")


@dataclass(frozen=True)
class Param:
    """One constructor parameter: its default, constraints and numpydoc entry.

    ``task`` names the only estimator that takes it ("classifier"), or None
    for both.
    """

    name: str
    default: object
    constraints: object  # a list of constraints, or "no_validation"
    doc: str
    task: str = None


PARAMS = [
    Param("ensemble", None, "no_validation", ""),  # documented by each estimator
    Param(
        "body_layer_sizes",
        (256, 256),
        [_SIZES],
        """body_layer_sizes : tuple of int, default=(256, 256)
        Widths of the hidden layers of the shared MLP body (ReLU). ``()``
        feeds the standardised input straight to the heads.""",
    ),
    Param(
        "head_layer_sizes",
        (),
        [_SIZES],
        """head_layer_sizes : tuple of int, default=()
        Hidden widths inside each head. ``()`` makes each head one linear
        layer, the lightest choice; all heads run as one batched operation.""",
    ),
    Param(
        "head_rank",
        "auto",
        [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        """head_rank : int, "auto" or None, default="auto"
        Width of a linear projection of the body's output shared by all
        heads: each head's first layer then reads ``head_rank`` features
        instead of the body's full width, a low-rank factorisation that makes
        many heads cost little more than one. ``None`` gives full-width heads
        (the Hydra paper). ``"auto"`` uses a rank of
        ``max(32, n_outputs)`` when that at least halves the heads' cost
        (many heads, e.g. one per tree of a forest) and full-width heads
        otherwise (a few MLP members). A rank at or above the body's width
        also gives full-width heads. The rank used is in ``head_rank_``.""",
    ),
    Param(
        "n_heads",
        None,
        [Interval(Integral, 1, None, closed="left"), None],
        """n_heads : int, default=None
        Number of heads. ``None`` gives one head per member. With fewer heads
        than members, member ``m`` is assigned to head ``m % n_heads``
        (``member_heads_``) and each head imitates the (weighted) mixture of
        its members. ``n_heads=1`` is plain knowledge distillation (no
        epistemic uncertainty).""",
    ),
    Param(
        "head_matching",
        "auto",
        [StrOptions({"auto", "member", "rank"})],
        """head_matching : {"auto", "member", "rank"}, default="auto"
        What each head imitates in phase 2. ``"member"``: head ``m`` imitates
        member ``m`` (the Hydra paper). ``"rank"``: head ``m`` imitates the
        member of rank ``m`` in each row (members sorted by their prediction:
        the class they vote for, or their mean), the ensemble's order
        statistics. Ranking permutes exchangeable members, so the ensemble's
        mean and uncertainty are the same, and it gives the heads targets they
        can learn when a single member is not a smooth function of the input:
        a tree's vote jumps from row to row, but how many trees vote for each
        class changes smoothly. With fewer heads, consecutive ranks share a
        head. ``"auto"``: ``"rank"`` for ensembles of trees (forests, extra
        trees, bagged trees, boosted-tree seed ensembles) with equal weights,
        ``"member"`` otherwise. The choice is in ``head_matching_``.""",
    ),
    Param(
        "body",
        None,
        [None, type, torch.nn.Module],
        """body : torch.nn.Module class or instance, default=None
        A custom shared body used instead of the MLP (``body_layer_sizes`` is
        then ignored), e.g. a small CNN for images. A class is instantiated
        with ``body_params`` at each fit (seeded by ``random_state``); an
        instance is deep-copied and trained from its current weights. The body
        maps the scaled input batch ``(N, ...)`` to features ``(N, ...)``,
        flattened to ``(N, D)`` for the heads; ``D`` is inferred from one
        forward pass. With a custom body ``X`` may have more than two
        dimensions, e.g. images ``(n_samples, channels, height, width)``.""",
    ),
    Param(
        "body_params",
        None,
        [dict, None],
        """body_params : dict, default=None
        Constructor arguments of a ``body`` class. Each is also a parameter
        ``body__<name>`` of the estimator (``get_params`` / ``set_params``),
        so ``GridSearchCV`` can search it, as with skorch's ``module__``.""",
    ),
    Param(
        "input_scaling",
        "auto",
        [StrOptions({"auto", "feature", "channel", "global"}), None],
        """input_scaling : {"auto", "feature", "channel", "global"} or None, default="auto"
        Standardisation of the input inside the student, from the transfer
        rows. ``"feature"``: every input value by its own mean and standard
        deviation; ``"channel"``: one mean and standard deviation per index of
        axis 1 (image channels); ``"global"``: one for all values; ``None``:
        the input unchanged. ``"auto"`` is ``"feature"`` for 2-D ``X`` and
        ``"channel"`` for ``X`` of more dimensions.""",
    ),
    Param(
        "feature_encoding",
        "auto",
        [StrOptions({"auto", "piecewise"}), None],
        """feature_encoding : {"auto", "piecewise"} or None, default="auto"
        Encoding of each numeric feature of a table before the body.
        ``"piecewise"``: a piecewise-linear encoding over ``n_bins`` bins
        (Gorishniy et al. 2022, :class:`skhydra.nn.PiecewiseLinear`) whose
        edges are quantiles of the split thresholds the teacher's trees use
        on that feature, or of the feature's values when the members' splits
        cannot be read; binary columns, and features no tree splits on, pass
        unchanged. A tree ensemble is a step function with its steps at those
        thresholds, which such an encoding lets the body draw with one unit
        per step. ``None``: the standardised features only. ``"auto"``:
        ``"piecewise"`` for tree ensembles (forests, extra trees, bagged
        trees, boosted-tree seed ensembles) on 2-D ``X`` with the default
        body, ``None`` otherwise. The choice is in ``feature_encoding_``.""",
    ),
    Param(
        "n_bins",
        16,
        [Interval(Integral, 1, None, closed="left")],
        """n_bins : int, default=16
        Most bins per feature of the piecewise-linear encoding.""",
    ),
    Param(
        "out_of_bag",
        "auto",
        ["boolean", StrOptions({"auto"})],
        """out_of_bag : bool or "auto", default="auto"
        On the rows the ensemble was fitted on, learn the members' spread
        from each row's out-of-bag members (those whose bootstrap sample
        left the row out): the row's members are replaced by evenly spaced
        order statistics of its out-of-bag members. A tree memorises the
        rows it was grown on, so on its training rows a forest disagrees
        far less than on any new row, and a student that learns it there
        under-reports its uncertainty everywhere. A training row with fewer
        than two out-of-bag members (every row of extra trees, which use no
        bootstrap) counts in phase 1 only: the heads learn the spread from
        the synthetic rows and the other rows. Needs rank matching and a
        random forest, extra trees or bagging fitted on ``X`` itself: the
        rows are matched by position, so ``X`` must be the ensemble's
        training rows in their order. ``"auto"``: used when the ensemble is
        one of these, matched by rank, and was fitted by this ``fit`` or on
        as many rows as ``X`` has; ``True`` requires it (an error names what
        is missing), and also takes an ``X`` that starts with the ensemble's
        training rows, in their order, and goes on with other rows (say,
        unlabelled rows from where the student will be used), which every
        member labels; ``False``: the members' predictions as they are.
        Whether it was used is in ``out_of_bag_``.""",
    ),
    Param(
        "temperature",
        4.0,
        [Interval(Real, 0, None, closed="neither")],
        """temperature : float, default=4.0
        Distillation temperature ``T`` of the per-head KL divergence,
        ``T^2 / M * sum_m KL(softmax(log p_m / T) || softmax(z_m / T))``.
        ``T > 1`` softens the members' probabilities and weighs the smaller
        classes more; predictions always use ``T = 1``.""",
        task="classifier",
    ),
    Param(
        "match_aleatoric",
        "auto",
        ["boolean", StrOptions({"auto"})],
        """match_aleatoric : bool or "auto", default="auto"
        After training, multiply every head's logits by one factor, chosen
        on the validation rows (every transfer row without early stopping)
        so that the heads' mean entropy, the student's aleatoric part, equals
        that of the members they imitate; the factor is kept within
        [0.5, 2] and folded into the heads' last layer (``head_scale_``).
        A fully grown tree votes with certainty, so a forest's aleatoric part
        is zero, while smooth heads imitating its votes hedge near the class
        boundaries and report part of the trees' disagreement as their own
        entropy; the factor moves it back into the epistemic part. Needs two
        heads or more. ``"auto"``: for tree ensembles (forests, extra trees,
        bagged trees, boosted-tree seed ensembles); ``True``: for any
        ensemble; ``False``: never (``head_scale_`` is 1).""",
        task="classifier",
    ),
    Param(
        "match_epistemic",
        "auto",
        ["boolean", StrOptions({"auto"})],
        """match_epistemic : bool or "auto", default="auto"
        After training, move every head's logits a factor further from (or
        closer to) the heads' mean logit, chosen on the same rows as
        ``match_aleatoric`` (and jointly with its factor) so that the heads'
        mean disagreement, the student's epistemic part, equals that of the
        members they imitate; the factor is kept within [0.5, 2] and folded
        into the heads' last layer (``head_spread_``). Heads that cannot
        fit every member's own deviations shrink towards their mean, and
        the student under-reports the ensemble's disagreement by as much on
        new rows. Needs two heads or more, of one layer
        (``head_layer_sizes=()``). ``"auto"``: for tree ensembles, with
        heads of one layer; ``True``: for any ensemble; ``False``: never
        (``head_spread_`` is 1).""",
        task="classifier",
    ),
    Param(
        "augmentation",
        "auto",
        [StrOptions({"auto", "noise", "mixup", "munge"}), None],
        """augmentation : {"auto", "noise", "mixup", "munge"} or None, default="auto"
        Synthetic transfer rows, labelled by the ensemble, added to ``X``.
        Members agree on the rows they were fitted on; points around them are
        where members disagree, so augmentation is how the student learns the
        ensemble's disagreement. ``"noise"``: a random row plus Gaussian noise
        of ``noise_scale`` per-feature standard deviations. ``"mixup"``: a
        random convex combination of two random rows. ``"munge"``: a random
        row whose features each take, with probability 1/2, the value of its
        nearest neighbour plus noise as large as their difference (rows in the
        data's own neighbourhoods, Bucilua et al. 2006). ``None``: ``X`` only.
        ``"auto"``: ``"noise"``, except for tree ensembles on tables, whose
        members agree on their training rows much more than on new rows: half
        ``"munge"`` rows, half the rows of a pool of noise and mixup
        candidates three times larger where the members disagree most (three
        quarters) or drawn at random (one quarter), ``augmentation_factor``
        times 1 to 4 per row (4 on small tables, 1 beyond 20,000 rows).""",
    ),
    Param(
        "augmentation_factor",
        1.0,
        [Interval(Real, 0, None, closed="left")],
        """augmentation_factor : float, default=1.0
        Synthetic rows per row of ``X``.""",
    ),
    Param(
        "noise_scale",
        0.5,
        [Interval(Real, 0, None, closed="left")],
        """noise_scale : float, default=0.5
        Standard deviation of the ``"noise"`` augmentation in standardised
        units.""",
    ),
    Param(
        "max_epochs",
        400,
        [Interval(Integral, 0, None, closed="left")],
        """max_epochs : int, default=400
        Most epochs of the whole fit, both phases together (skorch's
        meaning): ``phase1_epochs`` of them go to phase 1, the rest to phase
        2. Early stopping may end each phase sooner.""",
    ),
    Param(
        "phase1_epochs",
        100,
        [Interval(Integral, 0, None, closed="left")],
        """phase1_epochs : int, default=100
        Most epochs of phase 1, where the body and a single "Hinton head"
        learn the ensemble's mean prediction; at most ``max_epochs``. Phase 2
        then copies that head into every head and trains head ``m`` against
        member ``m`` for up to ``max_epochs - phase1_epochs`` epochs.""",
    ),
    Param(
        "lr",
        0.001,
        [Interval(Real, 0, None, closed="neither")],
        """lr : float, default=1e-3
        Learning rate of AdamW (a fresh optimiser in each phase).""",
    ),
    Param(
        "weight_decay",
        0.0001,
        [Interval(Real, 0, None, closed="left")],
        """weight_decay : float, default=1e-4
        AdamW's decoupled weight decay.""",
    ),
    Param(
        "batch_size",
        "auto",
        [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        """batch_size : int or "auto", default="auto"
        Rows per training batch. ``"auto"`` uses ``n_train // 16`` clipped to
        [16, 256]: about 16 steps per epoch on small data, batches of 256 on
        large data.""",
    ),
    Param(
        "early_stopping",
        True,
        ["boolean"],
        """early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the transfer rows (real and
        synthetic) and stop each phase when the validation loss has not
        improved for ``n_iter_no_change`` epochs, restoring the best weights.
        Ignored, and all rows used, when the hold-out would have fewer than 2
        rows.""",
    ),
    Param(
        "validation_fraction",
        0.1,
        [Interval(Real, 0, 1, closed="neither")],
        """validation_fraction : float, default=0.1
        Fraction of the transfer rows held out for early stopping.""",
    ),
    Param(
        "n_iter_no_change",
        "auto",
        [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        """n_iter_no_change : int or "auto", default="auto"
        Patience of early stopping, in epochs. ``"auto"``: 60 passes over
        the real rows, i.e. ``60 * n_real / n_rows`` epochs of the whole
        transfer set, clipped to [10, 30]: 30 epochs when the transfer set
        has at most two rows per real row (the noise rows of smooth
        teachers), about 12 when a tree teacher's synthetic rows make it five
        times larger, where measured fits found their best epoch early and
        then ran 30 epochs for nothing. The patience used is in
        ``n_iter_no_change_``.""",
    ),
    Param(
        "memory_budget",
        "2GB",
        [Interval(Integral, 0, None, closed="left"), _BYTES, None],
        """memory_budget : int, str or None, default="2GB"
        Bytes of RAM the heads' targets may take during ``fit`` (an int, or a
        string such as ``"500MB"``, ``"4GiB"``). The ensemble's predictions
        are computed in chunks of rows; targets beyond the budget are written
        to files in a temporary folder (under ``$TMPDIR``), read batch by
        batch while training and deleted when ``fit`` ends. ``None`` keeps
        everything in RAM.""",
    ),
    Param(
        "cache",
        None,
        [None, str, HasMethods(["cache"])],
        """cache : str or joblib.Memory, default=None
        Cache of the ensemble's predictions: a folder path or a
        :class:`joblib.Memory` (the convention of scikit-learn's
        ``Pipeline(memory=...)``). A search over the student's parameters then
        computes the teacher's predictions once per distinct ``X`` rather than
        once per candidate. Synthetic rows are part of the key, so fix
        ``random_state`` for cache hits with augmentation. Cached predictions
        are held whole (memory-mapped when read back from a path).""",
    ),
    Param(
        "n_jobs",
        None,
        [Integral, None],
        """n_jobs : int, default=None
        Members predict in parallel over ``n_jobs`` joblib workers (threads,
        or the backend set with :func:`joblib.parallel_config`). ``None``
        means 1 unless a ``joblib.parallel_config`` context sets it, ``-1``
        all processors. Under joblib's dask backend the teacher's predictions
        go to the cluster's workers by blocks of rows (every worker, unless
        ``n_jobs=1``).""",
    ),
    Param(
        "device",
        "auto",
        [
            StrOptions({"auto", "cpu", "cuda"}),
            _Satisfying(
                lambda v: isinstance(v, str) and v.startswith("cuda:") and v[5:].isdigit(),
                "a str 'cuda:<index>'",
            ),
        ],
        """device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:<index>"``. Asking for CUDA without a GPU is an error. The
        device used is recorded in ``device_``.""",
    ),
    Param(
        "precision",
        "float32",
        [StrOptions({"float32", "bfloat16"})],
        """precision : {"float32", "bfloat16"}, default="float32"
        Precision of the student's forward pass. ``"bfloat16"`` runs it under
        :func:`torch.autocast` (mixed precision: weights, optimiser and losses
        stay float32).""",
    ),
    Param(
        "accelerator",
        None,
        [None, HasMethods(["prepare", "backward"])],
        """accelerator : accelerate.Accelerator, default=None
        Train the student through Hugging Face Accelerate (skorch's
        :class:`~skorch.hf.AccelerateMixin`), e.g. on several GPUs or nodes
        with ``accelerate launch``: each process trains on its own share of
        every epoch's rows, and one optimiser step uses ``num_processes *
        batch_size`` rows. ``device`` is then ignored; the accelerator's
        device is used. With several processes, set ``random_state`` to an
        int (every process must draw the same validation split and synthetic
        rows), and on machines without GPUs pass ``Accelerator(cpu=True)``.
        See the scaling-out page of the documentation.""",
    ),
    Param(
        "callbacks",
        None,
        [list, None],
        """callbacks : list of skorch callbacks, default=None
        Extra callbacks for the skorch net (copied for each phase).""",
    ),
    Param(
        "skorch_params",
        None,
        [dict, None],
        """skorch_params : dict, default=None
        Other :class:`skorch.NeuralNet` parameters, e.g.
        ``{"optimizer": torch.optim.SGD, "optimizer__momentum": 0.9}``; not
        those the estimator sets from its own parameters (``lr``,
        ``batch_size``, ``max_epochs``, ``device``, ``callbacks``...).""",
    ),
    Param(
        "random_state",
        None,
        ["random_state"],
        """random_state : int, RandomState instance or None, default=None
        Seeds the augmentation, the validation split, the initialisation and
        the shuffling (an unfitted ensemble uses its own ``random_state``). The
        same integer gives the same predictions on the same CPU.""",
    ),
    Param(
        "verbose",
        0,
        ["verbose"],
        """verbose : int, default=0
        ``0`` is silent. ``1`` shows progress bars of the teacher's labelling
        (and, for tree teachers, of its scoring of candidate rows) and of the
        epochs of each phase, and prints skorch's epoch table for each phase
        (notebook widgets in Jupyter, text elsewhere). ``2`` also shows a bar
        of each epoch's batches.""",
    ),
]

_BY_NAME = {p.name: p for p in PARAMS}

ATTRIBUTES = """ensemble_ : object
        The fitted ensemble: ``ensemble`` itself when it was fitted (never
        refit or modified), else the clone fitted in ``fit``.

    teacher_ : skhydra.ensembles.Teacher
        The resolved ensemble: its members, classes, weights and
        preprocessing.

    n_members_ : int
        Number of members of the ensemble.

    n_heads_ : int
        Number of heads of the student.

    head_matching_ : {"member", "rank"}
        What the heads imitate (see ``head_matching``).

    feature_encoding_ : {"piecewise"} or None
        The encoding of the features (see ``feature_encoding``).

    out_of_bag_ : bool
        Whether the ensemble's training rows were learned from their
        out-of-bag members (see ``out_of_bag``).

    n_iter_no_change_ : int
        Early stopping's patience in epochs (see ``n_iter_no_change``).

    head_rank_ : int or None
        Width of the projection the heads share, or None for full-width
        heads (see ``head_rank``).

    member_heads_ : ndarray of shape (``n_members_``,)
        The head each member is distilled into: ``m % n_heads_`` with member
        matching; with rank matching, the head of each rank
        (``r * n_heads_ // n_members_``).

    head_weights_ : ndarray of shape (``n_heads_``,)
        Weight of each head in the student's mixture: the summed weights of
        its members (equal weights unless a voting ensemble weighs them).

    target_encoding_ : object
        How the ensemble's predictions were turned into head targets (and
        how head outputs are read back).

    n_features_in_ : int
        Number of features seen during ``fit``: ``X.shape[1]``, which for
        input of more than two dimensions is scikit-learn's convention for
        the size of axis 1 (e.g. image channels).

    input_shape_ : tuple of int
        Shape of one student input row seen during ``fit`` (``(n_features,)``
        for tables, e.g. ``(channels, height, width)`` for images).

    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen during ``fit``, when ``X`` has string
        column names.

    net_ : skorch.NeuralNet
        The trained student; ``net_.module_`` is a
        :class:`skhydra.nn.HydraModule` and ``net_.history`` the epoch log of
        both phases.

    device_ : str
        The torch device the student was trained on."""


def _init_method(names):
    """An ``__init__`` that stores the parameters ``names`` and nothing else.

    scikit-learn reads an estimator's parameters from the signature of its
    ``__init__``. Building that function from :data:`PARAMS`, as
    :mod:`dataclasses` builds one from fields, keeps a single declaration of
    each parameter: ``ensemble`` positional, the others keyword-only, with the
    table's defaults.
    """
    first, *rest = names
    arguments = ", ".join(
        [f"{first}=defaults[{first!r}]", "*", *(f"{n}=defaults[{n!r}]" for n in rest)]
    )
    body = "".join(f"    self.{n} = {n}\n" for n in names)
    namespace = {"defaults": {n: _BY_NAME[n].default for n in names}}
    exec(f"def __init__(self, {arguments}):\n{body}", namespace)
    return namespace["__init__"]


def declare_parameters(task, ensemble_doc):
    """Class decorator: an estimator's parameters, from :data:`PARAMS`.

    Gives the class its ``__init__`` (every parameter of ``task``, in the
    table's order), its ``_parameter_constraints``, and fills ``{parameters}``
    and ``{attributes}`` in its docstring in the same order.

    Parameters
    ----------
    task : {"classifier", "regressor"}
        Which parameters: those of both estimators and those of ``task``.
    ensemble_doc : str
        The class's own numpydoc entry for the ``ensemble`` parameter.

    Returns
    -------
    callable
        The decorator.
    """
    names = [p.name for p in PARAMS if p.task in (None, task)]

    def decorate(cls):
        init = _init_method(names)
        init.__qualname__ = f"{cls.__name__}.__init__"
        init.__module__ = cls.__module__
        cls.__init__ = init
        cls._parameter_constraints = {name: _BY_NAME[name].constraints for name in names}
        docs = [ensemble_doc if n == "ensemble" else _BY_NAME[n].doc for n in names]
        cls.__doc__ = cls.__doc__.replace("{parameters}", "\n\n    ".join(docs)).replace(
            "{attributes}", ATTRIBUTES
        )
        return cls

    return decorate
