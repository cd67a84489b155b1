"""Split-conformal prediction on top of a fitted model.

A fitted regressor or classifier (a Hydra student, a Pipeline ending in one,
or any scikit-learn model with the needed methods) is calibrated on held-out
rows that it was not trained on. The result is a prediction **interval**
(regression) or a prediction **set** of labels (classification) that contains
the true target with probability at least ``confidence_level`` on new rows
exchangeable with the calibration rows, whatever the model and the data
distribution.

The student's uncertainty decides where the intervals are wide: the
normalised conformity score ``|y - mean| / std`` gives intervals
``mean ± q * std`` that follow the ensemble's uncertainty, while the coverage
guarantee comes from the calibration alone.
"""

from ._base import conformal_quantile
from ._classifier import ConformalClassifier
from ._regressor import ConformalRegressor

__all__ = ["ConformalClassifier", "ConformalRegressor", "conformal_quantile"]
