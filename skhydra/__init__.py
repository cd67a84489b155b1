"""skhydra: distil an ensemble into one network that keeps its uncertainty (Hydra)."""

from importlib.metadata import PackageNotFoundError, version

from ._classifier import HydraDistilledClassifier
from ._onnx import onnx_inputs, to_onnx
from ._persist import dump, load
from ._regressor import HydraDistilledRegressor
from .uncertainty import predict_uncertainty

try:
    __version__ = version("skhydra")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "HydraDistilledClassifier",
    "HydraDistilledRegressor",
    "__version__",
    "dump",
    "load",
    "onnx_inputs",
    "predict_uncertainty",
    "to_onnx",
]
