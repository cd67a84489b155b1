"""Progress bars of long fits: the teacher's labelling and the epochs of both phases.

Bars appear with ``verbose >= 1`` only; a silent fit creates none. They are
``tqdm.auto`` bars (tqdm is a dependency of skorch), so they render as widgets
in a notebook and as text on a terminal; lines printed while a bar is open
(skorch's epoch table) go through :func:`tqdm.auto.tqdm.write`, above the bar.
"""

from skorch.callbacks import Callback
from tqdm.auto import tqdm

__all__ = ["EpochProgress", "progress_sink", "row_progress"]


def progress_sink(*args, **kwargs):
    """A ``print`` that writes above open progress bars instead of through them."""
    end = kwargs.pop("end", "\n")
    kwargs.pop("flush", None)
    tqdm.write(" ".join(str(a) for a in args), end=end, **kwargs)


def row_progress(chunks, total, desc, verbose):
    """Yield ``(start, stop, ...)`` chunks unchanged, advancing a bar by their rows.

    Parameters
    ----------
    chunks : iterable of tuple
        Chunks whose first two items are their first and past-the-end rows.
    total : int
        Rows of all chunks.
    desc : str
        The bar's label.
    verbose : int
        No bar below 1.

    Yields
    ------
    tuple
        The chunks of ``chunks``.

    Examples
    --------
    >>> from skhydra._progress import row_progress
    >>> [c for c in row_progress([(0, 2, "a"), (2, 3, "b")], 3, "rows", verbose=0)]
    [(0, 2, 'a'), (2, 3, 'b')]
    """
    if verbose < 1:
        yield from chunks
        return
    with tqdm(total=total, desc=desc, unit="rows", leave=True) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(chunk[1] - chunk[0])


class EpochProgress(Callback):
    """A skorch callback: one bar per phase, advanced once per epoch.

    The bar's postfix shows the epoch's training and validation losses. It is
    closed when training ends, also when early stopping ends it before
    ``max_epochs``.

    Parameters
    ----------
    desc : str
        The bar's label, e.g. ``"Phase 1"``.
    """

    def __init__(self, desc):
        self.desc = desc

    def on_train_begin(self, net, **kwargs):
        self.bar_ = tqdm(total=net.max_epochs, desc=self.desc, unit="epoch", leave=True)

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        losses = {k: f"{row[k]:.4g}" for k in ("train_loss", "valid_loss") if k in row}
        self.bar_.set_postfix(losses, refresh=False)
        self.bar_.update()

    def on_train_end(self, net, **kwargs):
        bar = self.__dict__.pop("bar_", None)
        if bar is not None:
            bar.close()

    def __getstate__(self):
        # An open bar holds a stream: the fitted net pickles without it.
        state = self.__dict__.copy()
        state.pop("bar_", None)
        return state
