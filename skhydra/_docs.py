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
        plain knowledge distillation (no epistemic uncertainty)."""

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
        Number of features seen during ``fit``.

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
