"""Docstring fragments shared by the two estimators."""

ARCHITECTURE = """\
body_layer_sizes : tuple of int, default=(256, 256)
        Widths of the hidden layers of the shared MLP body (ReLU). ``()``
        feeds the standardised input straight to the heads.

    head_layer_sizes : tuple of int, default=()
        Hidden widths inside each head. ``()`` makes each head one linear
        layer, the lightest choice; all heads run as one batched operation.

    n_heads : int, default=None
        Number of heads. ``None`` gives one head per member. With fewer heads
        than members, member ``m`` is assigned to head ``m % n_heads`` and each
        head imitates the (weighted) mixture of its members. ``n_heads=1`` is
        plain knowledge distillation (no epistemic uncertainty).

    body : torch.nn.Module class or instance, default=None
        A custom shared body used instead of the MLP (``body_layer_sizes`` is
        then ignored), e.g. a small CNN for images. A class is instantiated
        with ``body_params`` at each fit (seeded by ``random_state``); an
        instance is deep-copied and trained from its current weights. The body
        maps the scaled input batch ``(N, ...)`` to features ``(N, ...)``,
        flattened to ``(N, D)`` for the heads; ``D`` is inferred from one
        forward pass. With a custom body ``X`` may have more than two
        dimensions, e.g. images ``(n_samples, channels, height, width)``.

    body_params : dict, default=None
        Constructor arguments of a ``body`` class. Each is also a parameter
        ``body__<name>`` of the estimator (``get_params`` / ``set_params``),
        so ``GridSearchCV`` can search it, as with skorch's ``module__``.

    input_scaling : {"auto", "feature", "channel", "global"} or None, default="auto"
        Standardisation of the input inside the student, from the transfer
        rows. ``"feature"``: every input value by its own mean and standard
        deviation; ``"channel"``: one mean and standard deviation per index of
        axis 1 (image channels); ``"global"``: one for all values; ``None``:
        the input unchanged. ``"auto"`` is ``"feature"`` for 2-D ``X`` and
        ``"channel"`` for ``X`` of more dimensions."""

TRAINING = """\
phase1_epochs : int, default=100
        Maximum epochs of phase 1, where the body and a single "Hinton head"
        learn the ensemble's mean prediction.

    max_epochs : int, default=300
        Maximum epochs of phase 2, where every head starts as a copy of the
        phase-1 head and learns its members.

    lr : float, default=1e-3
        Learning rate of AdamW (a fresh optimiser in each phase).

    weight_decay : float, default=1e-4
        AdamW's decoupled weight decay.

    batch_size : int or "auto", default="auto"
        Rows per training batch. ``"auto"`` uses ``n_train // 16`` clipped to
        [16, 256]: about 16 steps per epoch on small data, batches of 256 on
        large data.

    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the transfer rows (real and
        synthetic) and stop each phase when the validation loss has not
        improved for ``n_iter_no_change`` epochs, restoring the best weights.
        Ignored, and all rows used, when the hold-out would have fewer than 2
        rows.

    validation_fraction : float, default=0.1
        Fraction of the transfer rows held out for early stopping.

    n_iter_no_change : int, default=30
        Patience of early stopping, in epochs.

    augmentation : {"noise", "mixup"} or None, default="noise"
        Synthetic transfer rows, labelled by the ensemble, added to ``X``.
        Members agree on the rows they were fitted on; points around them are
        where members disagree, so augmentation is how the student learns the
        ensemble's disagreement. ``"noise"``: a random row plus Gaussian noise
        of ``noise_scale`` per-feature standard deviations. ``"mixup"``: a
        random convex combination of two random rows. ``None``: ``X`` only.

    augmentation_factor : float, default=1.0
        Synthetic rows per row of ``X``.

    noise_scale : float, default=0.5
        Standard deviation of the ``"noise"`` augmentation in standardised
        units.

    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:<index>"``. Asking for CUDA without a GPU is an error. The
        device used is recorded in ``device_``.

    precision : {"float32", "bfloat16"}, default="float32"
        Precision of the student's forward pass. ``"bfloat16"`` runs it under
        :func:`torch.autocast` (mixed precision: weights, optimiser and losses
        stay float32), which speeds up training on GPUs with bfloat16 units.

    accelerator : accelerate.Accelerator, default=None
        Train the student through Hugging Face Accelerate (skorch's
        :class:`~skorch.hf.AccelerateMixin`), e.g. on several GPUs or nodes
        with ``accelerate launch``: each process trains on its own share of
        every epoch's rows. ``device`` is then ignored; the accelerator's
        device is used.

    memory_budget : int, str or None, default="2GB"
        Bytes of RAM the ensemble's predictions and the heads' targets may
        take during ``fit`` (an int, or a string such as ``"500MB"``,
        ``"4GiB"``). They are computed in chunks of rows; beyond the budget
        they are written to files in a temporary folder (under ``$TMPDIR``),
        read batch by batch while training and deleted when ``fit`` ends.
        ``None`` keeps everything in RAM.

    memory : str or joblib.Memory, default=None
        Cache of the ensemble's predictions (the convention of
        :class:`~sklearn.pipeline.Pipeline`): a folder path or a
        :class:`joblib.Memory`. A search over the student's parameters then
        computes the teacher's predictions once per distinct ``X`` rather than
        once per candidate. Synthetic rows are part of the key, so fix
        ``random_state`` for cache hits with augmentation. Cached predictions
        are held whole (memory-mapped when read back from a path).

    n_jobs : int, default=None
        Members predict in parallel over ``n_jobs`` joblib workers (threads,
        or the backend set with :func:`joblib.parallel_config`, e.g. dask or
        ray). ``None`` means 1, ``-1`` all processors.

    random_state : int, RandomState instance or None, default=None
        Seeds the augmentation, the validation split, the initialisation and
        the shuffling (an unfitted ensemble uses its own ``random_state``). The
        same integer gives the same predictions on the same CPU.

    verbose : int, default=0
        ``0`` is silent, ``1`` prints skorch's epoch table for each phase,
        ``2`` also shows a progress bar per epoch.

    callbacks : list of skorch callbacks, default=None
        Extra callbacks for the skorch net (copied at each fit).

    skorch_params : dict, default=None
        Other :class:`skorch.NeuralNet` parameters, e.g.
        ``{"optimizer": torch.optim.SGD, "optimizer__momentum": 0.9}``."""

ATTRIBUTES = """\
ensemble_ : object
        The fitted ensemble: ``ensemble`` itself when it was fitted (never
        refit or modified), else the clone fitted in ``fit``.

    n_members_ : int
        Number of members of the ensemble.

    n_heads_ : int
        Number of heads of the student.

    n_features_in_ : int
        Number of features seen during ``fit``: ``X.shape[1]``, which for
        input of more than two dimensions is scikit-learn's convention for
        the size of axis 1 (e.g. image channels).

    input_shape_ : tuple of int
        Shape of one input row seen during ``fit`` (``(n_features,)`` for
        tables, e.g. ``(channels, height, width)`` for images).

    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen during ``fit``, when ``X`` has string
        column names.

    net_ : skorch.NeuralNet
        The trained student; ``net_.module_`` is a
        :class:`skhydra.nn.HydraModule` and ``net_.history`` the epoch log of
        both phases.

    device_ : str
        The torch device the student was trained on."""


def fill(doc):
    """Insert the shared fragments into a class docstring."""
    return (
        doc.replace("{architecture}", ARCHITECTURE)
        .replace("{training}", TRAINING)
        .replace("{attributes}", ATTRIBUTES)
    )
