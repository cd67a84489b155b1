"""Display classes: student versus teacher uncertainty, OOD shift, reliability.

They follow scikit-learn's visualisation API (as in
:class:`~sklearn.calibration.CalibrationDisplay`): build one with
``from_estimator`` or ``from_predictions``, which compute the values, store
them on the display and call :meth:`plot`. matplotlib is imported only inside
``plot``, so importing this module does not need it.
"""

from ._reliability import ReliabilityDisplay
from ._uncertainty import UncertaintyComparisonDisplay, UncertaintyShiftDisplay

__all__ = ["ReliabilityDisplay", "UncertaintyComparisonDisplay", "UncertaintyShiftDisplay"]
