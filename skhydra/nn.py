"""Pure torch building blocks of the Hydra student: a shared body and batched heads.

Nothing here imports scikit-learn; validation and array conversion live in the
estimators. Shapes use ``N`` for the batch, ``H`` for heads, ``D`` for features.
"""

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BatchedLinear",
    "FillMissing",
    "HydraHeads",
    "HydraModule",
    "PiecewiseLinear",
    "Standardize",
    "resolve_head_rank",
]


class Standardize(nn.Module):
    """Affine input scaling ``(x - loc) / scale`` stored as buffers.

    Parameters
    ----------
    loc, scale : torch.Tensor
        Location and scale broadcastable against one input row: shape (D,)
        per feature, (C, 1, 1) per channel of images (C, H, W), or () for a
        single value. Zero scales must be replaced by the caller (the
        estimators use 1 for constant inputs).

    Examples
    --------
    >>> import torch
    >>> from skhydra.nn import Standardize
    >>> Standardize(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))(torch.tensor([[3.0, 2.0]]))
    tensor([[1., 0.]])
    """

    def __init__(self, loc, scale):
        super().__init__()
        self.register_buffer("loc", torch.as_tensor(loc, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x):
        """Scale ``x`` of shape (N, ...)."""
        return (x - self.loc) / self.scale


class FillMissing(nn.Module):
    """Learned fill values for missing (NaN) inputs, and missingness indicators.

    Every feature gets a learnable fill value (in the units the module
    receives, e.g. standardised: 0 is the mean) used where it is NaN. The
    features that were missing in the training rows also get one indicator
    column each (1 where missing), appended to the row, so the body can tell a
    filled value from an observed one; a feature never missing in training is
    filled, without an indicator, when it is missing later.

    Parameters
    ----------
    n_features : int
        Width ``D`` of the input rows.
    missing : sequence of int
        Features that get an indicator column.

    Examples
    --------
    >>> import torch
    >>> from skhydra.nn import FillMissing
    >>> fill = FillMissing(2, missing=[1])
    >>> fill(torch.tensor([[1.0, float("nan")], [2.0, 3.0]]))
    tensor([[1., 0., 1.],
            [2., 3., 0.]], grad_fn=<CatBackward0>)
    """

    def __init__(self, n_features, missing):
        super().__init__()
        self.register_buffer("missing", torch.as_tensor(list(missing), dtype=torch.long))
        self.fill = nn.Parameter(torch.zeros(n_features))

    def forward(self, x):
        """Fill ``x`` of shape (N, D); return (N, D + len(missing))."""
        absent = torch.isnan(x)
        x = torch.where(absent, self.fill.to(x.dtype), x)
        return torch.cat([x, absent[:, self.missing].to(x.dtype)], dim=1)


class PiecewiseLinear(nn.Module):
    """Piecewise-linear encoding of chosen features; the other columns pass unchanged.

    A feature with edges ``e_0 < ... < e_K`` becomes ``K`` columns, column
    ``k`` being ``clip((x - e_k) / (e_{k+1} - e_k), 0, 1)``: 1 for the bins
    below ``x``, the fraction of its own bin, 0 above (Gorishniy et al.,
    2022). Values outside the edges extrapolate linearly: the first column
    adds ``x - e_0`` below ``e_0`` and the last ``x - e_K`` above ``e_K``, a
    slope of one per unit of ``x`` whatever the width of the end bins (a
    narrow end bin would otherwise turn a value just outside the edges into
    a huge one). The encoded columns come first, in feature order, then the
    unencoded ones.

    Parameters
    ----------
    edges : sequence of (array-like or None)
        Increasing edges of each input column (at least two), in the units
        the module receives, or None for a column that passes unchanged.

    Examples
    --------
    >>> import torch
    >>> from skhydra.nn import PiecewiseLinear
    >>> encode = PiecewiseLinear([[0.0, 1.0, 3.0], None])
    >>> encode(torch.tensor([[2.0, 7.0], [-1.0, 7.0], [5.0, 7.0]]))
    tensor([[ 1.0000,  0.5000,  7.0000],
            [-1.0000,  0.0000,  7.0000],
            [ 1.0000,  3.0000,  7.0000]])
    >>> encode.out_features
    3
    """

    def __init__(self, edges):
        super().__init__()
        feature, left, width, first, last = [], [], [], [], []
        for j, e in enumerate(edges):
            if e is None:
                continue
            e = torch.as_tensor(e, dtype=torch.float64)
            n = len(e) - 1
            feature += [j] * n
            left.append(e[:-1])
            width.append((e[1:] - e[:-1]).clamp_min(1e-12))
            first += [1.0] + [0.0] * (n - 1)
            last += [0.0] * (n - 1) + [1.0]
        kept = [j for j, e in enumerate(edges) if e is None]
        as_float = {"dtype": torch.float32}
        self.register_buffer("feature", torch.tensor(feature, dtype=torch.long))
        self.register_buffer("left", torch.cat(left).float() if left else torch.zeros(0))
        self.register_buffer("width", torch.cat(width).float() if width else torch.ones(0))
        # 1 on the first (last) column of each feature: the ones that extrapolate.
        self.register_buffer("first", torch.tensor(first, **as_float))
        self.register_buffer("last", torch.tensor(last, **as_float))
        self.register_buffer("kept", torch.tensor(kept, dtype=torch.long))
        self.in_features = len(edges)

    @property
    def out_features(self):
        return len(self.feature) + len(self.kept)

    def forward(self, x):
        """Encode ``x`` of shape (N, in_features); return (N, out_features)."""
        offset = x.index_select(1, self.feature) - self.left
        z = (offset / self.width).clamp(0.0, 1.0)
        below = self.first * offset.clamp(max=0.0)
        above = self.last * (offset - self.width).clamp(min=0.0)
        return torch.cat([z + below + above, x.index_select(1, self.kept)], dim=1)


class BatchedLinear(nn.Module):
    """``H`` independent linear layers applied as one batched matrix product.

    Parameters
    ----------
    n_heads : int
        Number of heads ``H``.
    in_features, out_features : int
        Widths of each head's layer.

    Notes
    -----
    Input of shape (N, in) is shared by all heads; input of shape (N, H, in)
    gives each head its own features. Output has shape (N, H, out). Weights are
    initialised like :class:`torch.nn.Linear`, independently per head.

    Examples
    --------
    >>> import torch
    >>> from skhydra.nn import BatchedLinear
    >>> layer = BatchedLinear(n_heads=4, in_features=8, out_features=3)
    >>> layer(torch.randn(5, 8)).shape, layer(torch.randn(5, 4, 8)).shape
    (torch.Size([5, 4, 3]), torch.Size([5, 4, 3]))
    """

    def __init__(self, n_heads, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_heads, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_heads, out_features))
        bound = 1.0 / max(in_features, 1) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    @property
    def n_heads(self):
        return self.weight.shape[0]

    def forward(self, x):
        if x.dim() == 2:
            # One (N, in) @ (in, H * out) product: a single GEMM forward and
            # backward, where an einsum runs one small product per head.
            n_heads, n_in, n_out = self.weight.shape
            weight = self.weight.transpose(0, 1).reshape(n_in, n_heads * n_out)
            bias = self.bias.reshape(n_heads * n_out)
            return torch.addmm(bias, x, weight).view(-1, n_heads, n_out)
        out = torch.einsum("nhi,hio->nho", x, self.weight)
        return out + self.bias

    def expand(self, n_heads):
        """Replace the layer's heads by ``n_heads`` copies of head 0."""
        self.weight = nn.Parameter(self.weight.data[:1].repeat(n_heads, 1, 1).clone())
        self.bias = nn.Parameter(self.bias.data[:1].repeat(n_heads, 1).clone())


class HydraHeads(nn.Module):
    """A stack of ``H`` small MLP heads evaluated together.

    Parameters
    ----------
    n_heads : int
        Number of heads ``H``.
    in_features : int
        Width of the body's output.
    hidden_sizes : tuple of int
        Hidden widths inside each head; ``()`` gives one linear layer per head.
    out_features : int
        Outputs per head (classes, or 2 for a Gaussian's mean and variance).
    rank : int or None, default=None
        Width ``r`` of a linear projection of the body's output shared by all
        heads (no bias, no activation), so each head's first layer maps ``r``
        features instead of ``in_features``: a low-rank factorisation of the
        heads' first layers. ``None``, or a rank of at least
        ``in_features``, gives full-width heads.

    Notes
    -----
    The heads' first layers cost ``in_features * H * width`` multiply-adds
    per row at full width and ``r * (in_features + H * width)`` with the
    projection: with 100 heads of 10 classes on 256 features, 256k versus
    40k at ``r = 32``.

    Examples
    --------
    >>> import torch
    >>> from skhydra.nn import HydraHeads
    >>> heads = HydraHeads(n_heads=1, in_features=8, hidden_sizes=(16,), out_features=3)
    >>> heads.expand(5)
    >>> out = heads(torch.randn(2, 8))
    >>> out.shape, bool(torch.allclose(out[:, 0], out[:, 4]))  # copies until trained apart
    (torch.Size([2, 5, 3]), True)
    >>> HydraHeads(n_heads=100, in_features=256, hidden_sizes=(), out_features=10, rank=32)
    HydraHeads(
      (project): Linear(in_features=256, out_features=32, bias=False)
      (layers): ModuleList(
        (0): BatchedLinear()
      )
    )
    """

    def __init__(self, n_heads, in_features, hidden_sizes, out_features, rank=None):
        super().__init__()
        self.project = nn.Identity()
        if rank is not None and rank < in_features:
            self.project = nn.Linear(in_features, rank, bias=False)
            in_features = rank
        widths = [in_features, *hidden_sizes, out_features]
        self.layers = nn.ModuleList(
            BatchedLinear(n_heads, a, b) for a, b in zip(widths[:-1], widths[1:], strict=False)
        )

    @property
    def n_heads(self):
        return self.layers[0].n_heads

    @property
    def rank(self):
        """Width of the shared projection, or None for full-width heads."""
        return getattr(self.project, "out_features", None)

    def __setstate__(self, state):
        super().__setstate__(state)
        if "project" not in self._modules:  # pickled before heads could share a projection
            self.project = nn.Identity()

    def forward(self, z):
        """Map body features (N, F) to head outputs (N, H, out)."""
        z = self.project(z)
        for i, layer in enumerate(self.layers):
            z = layer(z)
            if i < len(self.layers) - 1:
                z = F.relu(z)
        return z

    @torch.no_grad()
    def scale_outputs(self, factor):
        """Multiply every head's outputs by ``factor`` (its last layer's weights and bias).

        Examples
        --------
        >>> import torch
        >>> from skhydra.nn import HydraHeads
        >>> heads = HydraHeads(n_heads=2, in_features=4, hidden_sizes=(8,), out_features=3)
        >>> z = torch.randn(5, 4)
        >>> before = heads(z)
        >>> heads.scale_outputs(2.0)
        >>> bool(torch.allclose(heads(z), 2.0 * before))
        True
        """
        self.layers[-1].weight.mul_(factor)
        self.layers[-1].bias.mul_(factor)

    @torch.no_grad()
    def spread_outputs(self, factor, head_weights):
        """Move every head's outputs ``factor`` times as far from the heads' weighted mean.

        Exact for heads of one layer on the shared features (``head_layer_sizes=()``),
        whose mean output is the output of their mean weights.

        Examples
        --------
        >>> import torch
        >>> from skhydra.nn import HydraHeads
        >>> heads = HydraHeads(n_heads=3, in_features=4, hidden_sizes=(), out_features=2)
        >>> z, w = torch.randn(5, 4), torch.tensor([0.2, 0.3, 0.5])
        >>> before = heads(z)
        >>> mean = (before * w[:, None]).sum(dim=1, keepdim=True)
        >>> heads.spread_outputs(1.5, w)
        >>> bool(torch.allclose(heads(z), mean + 1.5 * (before - mean), atol=1e-6))
        True
        """
        if len(self.layers) != 1:
            raise ValueError(
                "The heads' spread can be folded into heads of one layer only "
                f"(head_layer_sizes=()), not {len(self.layers) - 1} hidden layers."
            )
        layer = self.layers[-1]
        w = torch.as_tensor(head_weights, dtype=layer.weight.dtype, device=layer.weight.device)
        for param in (layer.weight, layer.bias):
            shape = (-1,) + (1,) * (param.dim() - 1)
            mean = (param * w.view(shape)).sum(dim=0, keepdim=True)
            param.copy_(mean + factor * (param - mean))

    def expand(self, n_heads):
        """Replace every head by a copy of head 0 (Hydra's phase 2 start).

        The shared projection, if any, stays shared.
        """
        for layer in self.layers:
            layer.expand(n_heads)


#: Rank of the heads' shared projection with ``head_rank="auto"`` (at least the outputs).
AUTO_HEAD_RANK = 32


def resolve_head_rank(rank, in_features, n_heads, width):
    """The projection width heads use: ``rank`` resolved, or None for full width.

    Parameters
    ----------
    rank : int, "auto" or None
        The requested rank. ``"auto"`` gives ``max(32, width)`` when it at
        least halves the multiply-adds of the heads' first layers
        (``in_features * n_heads * width`` at full width), else None.
    in_features : int
        Width of the body's output.
    n_heads : int
        Number of heads.
    width : int
        Width of each head's first layer (its outputs for linear heads).

    Returns
    -------
    int or None
        None when the heads are full width (also for a rank at or above
        ``in_features``).

    Examples
    --------
    >>> from skhydra.nn import resolve_head_rank
    >>> resolve_head_rank("auto", 256, n_heads=100, width=10)  # one head per tree
    32
    >>> resolve_head_rank("auto", 256, n_heads=5, width=10) is None  # five MLP members
    True
    """
    if rank == "auto":
        rank = max(AUTO_HEAD_RANK, width)
        full = in_features * n_heads * width
        return rank if 2 * rank * (in_features + n_heads * width) <= full else None
    if rank is None or rank >= in_features:
        return None
    return int(rank)


class HydraModule(nn.Module):
    """Input scaling, a shared body and batched heads.

    Parameters
    ----------
    loc, scale : array-like
        Input standardisation applied inside the module, broadcastable
        against one input row (see :class:`Standardize`).
    body_layer_sizes : tuple of int
        Hidden widths of the default MLP body; ``()`` feeds the scaled input
        to the heads directly. Ignored when ``body`` is given.
    head_layer_sizes : tuple of int
        Hidden widths inside each head.
    n_outputs : int
        Outputs per head.
    n_heads : int, default=1
        Number of heads at construction (phase 1 uses one).
    dropout : float, default=0.0
        Dropout after each layer of the MLP body.
    body : torch.nn.Module, default=None
        A custom shared body mapping scaled inputs (N, ...) to features
        (N, ...), flattened to (N, D) for the heads; ``D`` is found with one
        forward pass of two zero rows (in eval mode, so lazy layers are
        initialised then).
    input_shape : tuple of int, default=None
        Shape of one input row; ``None`` means ``(len(loc),)``.
    missing : sequence of int or None, default=None
        For 2-D input that can hold NaN: the features missing in the training
        rows (see :class:`FillMissing`, applied after the scaling). ``None``:
        the input has no missing values.
    head_rank : int, "auto" or None, default=None
        Width of the projection shared by the heads (see
        :class:`HydraHeads` and :func:`resolve_head_rank`); ``None``: full-width
        heads.
    edges : sequence of (array-like or None), default=None
        For 2-D input: bin edges of each input feature, in scaled units, for
        a :class:`PiecewiseLinear` encoding applied after the scaling and the
        fills (missingness indicators pass unchanged). ``None``: no encoding.
    planned_heads : int, default=None
        The number of heads the module will be expanded to, for
        ``head_rank="auto"``; ``None`` means ``n_heads``.

    Examples
    --------
    >>> import torch
    >>> from skhydra.nn import HydraModule
    >>> module = HydraModule(torch.zeros(4), torch.ones(4), (16,), (), 3, n_heads=5)
    >>> module(torch.randn(8, 4)).shape
    torch.Size([8, 5, 3])

    A convolutional body for 8x8 images with one channel:

    >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> module = HydraModule(
    ...     torch.zeros(1, 1, 1), torch.ones(1, 1, 1), (), (), 10, n_heads=3,
    ...     body=cnn, input_shape=(1, 8, 8),
    ... )
    >>> module(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 3, 10])
    """

    def __init__(
        self,
        loc,
        scale,
        body_layer_sizes,
        head_layer_sizes,
        n_outputs,
        n_heads=1,
        dropout=0.0,
        body=None,
        input_shape=None,
        missing=None,
        head_rank=None,
        planned_heads=None,
        edges=None,
    ):
        super().__init__()
        self.scaler = Standardize(loc, scale)
        if input_shape is None:
            input_shape = (len(self.scaler.loc),)
        self.fill = nn.Identity()
        if missing is not None:
            self.fill = FillMissing(input_shape[0], missing)
            input_shape = (input_shape[0] + len(missing),)
        self.encode = nn.Identity()
        if edges is not None:
            edges = list(edges) + [None] * (input_shape[0] - len(edges))
            self.encode = PiecewiseLinear(edges)
            input_shape = (self.encode.out_features,)
        if body is None:
            layers = []
            width = input_shape[0]
            for size in body_layer_sizes:
                layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                width = size
            self.body = nn.Sequential(*layers)
        else:
            self.body = body
            width = _output_width(body, tuple(input_shape))
        first = (*head_layer_sizes, n_outputs)[0]
        rank = resolve_head_rank(head_rank, width, planned_heads or n_heads, first)
        self.heads = HydraHeads(n_heads, width, tuple(head_layer_sizes), n_outputs, rank=rank)

    def __setstate__(self, state):
        # Modules pickled before the piecewise-linear encoding existed.
        super().__setstate__(state)
        self._modules.setdefault("encode", nn.Identity())

    @property
    def n_heads(self):
        return self.heads.n_heads

    @property
    def head_rank(self):
        """Width of the heads' shared projection, or None for full-width heads."""
        return self.heads.rank

    def forward(self, x):
        """Map inputs (N, ...) to raw head outputs (N, H, n_outputs)."""
        return self.heads(self.body(self.encode(self.fill(self.scaler(x)))).flatten(1))

    def expand_heads(self, n_heads):
        """Copy the single phase-1 head into ``n_heads`` heads."""
        self.heads.expand(n_heads)


def _output_width(body, input_shape):
    """Width of ``body``'s flattened output for rows of ``input_shape``."""
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros((2, *input_shape)))
    except Exception as exc:
        raise ValueError(
            f"The body {type(body).__name__} failed on a batch of shape "
            f"{(2, *input_shape)} (two rows shaped like X's): {exc}"
        ) from exc
    finally:
        body.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != 2:
        raise ValueError(
            f"The body {type(body).__name__} must return a tensor with one row per "
            f"input row; for 2 rows of shape {input_shape} it returned "
            f"{getattr(out, 'shape', type(out).__name__)}."
        )
    return int(out[0].numel())


def gaussian_parameters(output, min_variance):
    """Split raw regression head outputs into means and positive variances.

    Parameters
    ----------
    output : torch.Tensor of shape (..., 2)
        Raw outputs; the last axis holds the mean and an unconstrained
        variance parameter.
    min_variance : float
        Floor added to the softplus of the variance parameter.

    Returns
    -------
    mean, variance : torch.Tensor of shape (...)

    Examples
    --------
    >>> import torch
    >>> from skhydra.nn import gaussian_parameters
    >>> mean, variance = gaussian_parameters(torch.tensor([[1.0, 0.0]]), min_variance=1e-6)
    >>> mean.item(), round(variance.item(), 4)  # softplus(0) = log 2
    (1.0, 0.6931)
    """
    return output[..., 0], F.softplus(output[..., 1]) + min_variance
