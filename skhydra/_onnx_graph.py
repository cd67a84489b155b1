"""The student as a torch module that computes every public prediction, for ONNX export.

:class:`ClassifierGraph` and :class:`RegressorGraph` run the fitted network
and then the formulas of ``predict``, ``predict_proba`` /
``predict(X, return_std=True)`` and ``predict_uncertainty``, in operations
torch's TorchScript exporter maps to ONNX and onnxruntime runs fast
(``tests/test_onnx.py`` checks them against the estimators).
"""

import copy

import torch
from torch import nn

from ._regressor import MIN_VARIANCE
from .nn import gaussian_parameters

__all__ = ["ClassifierGraph", "RegressorGraph"]


class ClassifierGraph(nn.Module):
    """The student's network, then predict, predict_proba and predict_uncertainty."""

    def __init__(self, estimator):
        super().__init__()
        self.network = _cpu_copy(estimator.net_.module_)
        self.register_buffer("weights", torch.as_tensor(estimator.head_weights_).float())
        self.n_heads = len(estimator.head_weights_)

    def forward(self, x):
        # Heads on the last axis, (n, classes, heads), as the estimator computes them.
        # The softmax is written out: onnxruntime's (Log)Softmax over a few classes is
        # several times slower than these element-wise ops and reductions over heads.
        z = _class_major_logits(self.network, x)
        z = z - z.amax(dim=1, keepdim=True)
        e = z.exp()
        s = e.sum(dim=1, keepdim=True)
        mean = _head_mean(e / s, self.weights)
        total, aleatoric = _entropy_parts(mean, z, e, s, self.weights, self.n_heads)
        epistemic = torch.clamp(total - aleatoric, min=0.0)
        proba = mean / mean.sum(dim=1, keepdim=True)
        return proba.argmax(dim=1), proba, aleatoric + epistemic, aleatoric, epistemic


def _class_major_logits(network, x):
    """``HydraModule.forward`` with the logits laid out (n, classes, heads).

    The last head layer's weights are reordered (a constant of the graph)
    rather than its output transposed: onnxruntime's transpose optimizer
    would move a transpose past the softmax's reductions, which then run
    over the few classes on the last axis, several times slower.
    """
    z = network.body(network.encode(network.fill(network.scaler(x)))).flatten(1)
    heads = network.heads
    z = heads.project(z)
    for layer in heads.layers[:-1]:
        z = torch.relu(layer(z))
    weight, bias = heads.layers[-1].weight, heads.layers[-1].bias  # (H, in, out), (H, out)
    if z.dim() == 2:  # features shared by the heads (linear heads)
        n_heads, n_in, n_out = weight.shape
        weight = weight.permute(1, 2, 0).reshape(n_in, n_out * n_heads)
        return torch.addmm(bias.t().reshape(-1), z, weight).view(-1, n_out, n_heads)
    return torch.einsum("nhi,hio->noh", z, weight) + bias.t()


def _head_mean(values, weights):
    """Weighted mean over the last axis: (..., heads) -> (...).

    A matrix product with a (heads, 1) column: onnxruntime runs it as one
    GEMM, several times faster than a product with a vector.
    """
    return (values @ weights[:, None]).squeeze(-1)


def _entropy_parts(q, z, e, s, weights, n_heads):
    """``uncertainty.entropy_decomposition(p, weights, log_p)`` in ONNX-exportable ops.

    Mirrors that function (tests compare the two) for the softmax
    ``p = e / s`` of shifted logits ``z`` (``e = exp(z)``, ``s`` its sum over
    the classes), all of shape (n, classes, heads) but ``s`` (n, 1, heads),
    and the heads' weighted mean ``q`` (n, classes) of ``p``.
    A head's entropy ``-sum p log p`` is ``log s - sum(e z) / s``: two passes
    over the large arrays fewer than forming ``log p``, which is what bounds
    the speed on large batches. torch has no ONNX export of
    ``torch.special.entr``, so ``entr(q) = -q log q`` (0 at ``q = 0``) is
    written out.
    """
    entropies = (s.log() - (e * z).sum(dim=1, keepdim=True) / s).squeeze(1)
    aleatoric = _head_mean(entropies, weights)
    if n_heads == 1:  # one head cannot disagree with itself: exactly 0
        return aleatoric, aleatoric
    q_log_q = torch.where(q > 0, q * torch.log(q), torch.zeros_like(q))
    return -q_log_q.sum(dim=1), aleatoric


class RegressorGraph(nn.Module):
    """The student's network, then ``predict(X, return_std=True)`` and predict_uncertainty."""

    def __init__(self, estimator):
        super().__init__()
        encoding = estimator.target_encoding_
        self.network = _cpu_copy(estimator.net_.module_)
        self.register_buffer("weights", torch.as_tensor(estimator.head_weights_).float())
        self.loc, self.scale = float(encoding.loc), float(encoding.scale)
        self.aleatoric_known = bool(encoding.aleatoric_known)

    def forward(self, x):
        # GaussianTargets.decode, then uncertainty.regression_uncertainty.
        mean, variance = gaussian_parameters(self.network(x), MIN_VARIANCE)
        means = mean * self.scale + self.loc
        mixture = _head_mean(means, self.weights)
        epistemic = _head_mean((means - mixture[:, None]).square(), self.weights)
        if self.aleatoric_known:
            aleatoric = _head_mean(variance * self.scale**2, self.weights)
        else:
            aleatoric = torch.full_like(epistemic, float("nan"))
        total = aleatoric + epistemic
        return mixture, total.sqrt(), total, aleatoric, epistemic


def _cpu_copy(module):
    # A copy, so exporting never moves or switches the fitted student's network; float32
    # whatever the training precision (the weights are float32 under bfloat16 autocast).
    return copy.deepcopy(module).cpu().float().eval()
