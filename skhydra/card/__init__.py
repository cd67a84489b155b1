"""Model cards: what a student was distilled from, how, and how faithfully.

:func:`model_card` describes a fitted Hydra student in a
:class:`skops.card.Card` (Markdown, the format of the Hugging Face Hub): its
teacher, its architecture and size, its training schedule, and numbers
measured on rows the user passes: fidelity to the teacher, out-of-distribution
detection and calibration, with their plots. Every number comes from
:mod:`skhydra.metrics` applied to the predictions of the student and of its
teacher, so a card can be checked against the metrics computed by hand.
"""

from ._card import model_card
from ._plots import PLOT_FILES as PLOT_FILES

__all__ = ["model_card"]
