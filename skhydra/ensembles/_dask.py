"""Teacher predictions on a Dask cluster, by blocks of rows.

Under ``joblib.parallel_config("dask")`` (or ``joblib.parallel_backend``)
with a :class:`distributed.Client`, the teacher's members predict on the
cluster's workers, in tasks of one block of rows times one group of members,
so that even a one-member ensemble keeps every worker busy (the members'
own threads, e.g. a forest's, cannot cross processes). The work goes through
the client of joblib's dask backend: the teacher is scattered once per pass
over the rows (not pickled into every task), each block of rows is scattered
on its own (a worker never receives all of ``X``), both pickled in one piece
(see :class:`_Whole`), and the results come back in row order with a bounded
number of tasks submitted and not yet consumed, so their predictions take a
bounded memory however slow the consumer (the target store) is.
``joblib.Parallel`` is not used for this: its generator dispatches a new task
whenever one completes, not when its result is consumed, so finished results
could pile up in the caller's memory.

``dask`` and ``distributed`` are imported only when joblib's dask backend is
active (they come with the ``dask`` extra).
"""

import pickle
import sys
from collections import deque
from itertools import islice
from uuid import uuid4

import numpy as np
from joblib.parallel import effective_n_jobs, get_active_backend

__all__ = ["block_plan", "dask_backend", "even_groups", "map_blocks"]

#: Fewest rows in a block (unless the caller's chunks are smaller): below this the
#: per-task overhead of the scheduler outweighs the members' work.
MIN_BLOCK_ROWS = 256

#: Tasks per worker thread that a pass over the rows aims for, so that every worker
#: gets several and a slow one delays the end by a fraction of its share only.
TASKS_PER_THREAD = 4


def dask_backend(n_jobs):
    """joblib's active dask backend, when the teacher's rows should go to it.

    Parameters
    ----------
    n_jobs : int or None
        The estimator's ``n_jobs``: ``1`` keeps the predictions in this
        process (as it keeps any joblib ``Parallel``); anything else uses the
        cluster's worker threads, as joblib's dask backend does.

    Returns
    -------
    backend : joblib._dask.DaskDistributedBackend or None
        None unless the active joblib backend is the dask one, it has more
        than one worker thread, and this code does not already run in a
        Dask task (there the predictions stay local, and joblib's own
        nesting rules apply to ``n_jobs``).
    n_threads : int
        The cluster's worker threads (0 without a dask backend).

    Examples
    --------
    >>> from skhydra.ensembles._dask import dask_backend
    >>> dask_backend(n_jobs=2)  # no dask backend active
    (None, 0)
    """
    module = sys.modules.get("joblib._dask")  # imported by joblib when the backend is set
    if module is None:
        return None, 0
    backend, _ = get_active_backend()
    if not isinstance(backend, module.DaskDistributedBackend) or _in_dask_task():
        return None, 0
    n_threads = effective_n_jobs(n_jobs)
    return (backend if n_threads > 1 else None), n_threads


def _in_dask_task():
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def block_plan(n_rows, n_members, n_threads, max_rows):
    """Blocks of rows and groups of members that spread a pass over ``n_threads``.

    Blocks hold about ``n_rows / (4 * n_threads)`` rows, at least
    :data:`MIN_BLOCK_ROWS` and at most ``max_rows`` (``max_rows`` wins), so
    that every thread gets about four blocks. Members stay together in one
    group per block, so that each block is sent once and its predictions come
    back whole; they are split into groups only when there are too few blocks
    for four tasks per thread (few rows, many members).

    Parameters
    ----------
    n_rows, n_members : int
        Rows to predict, members that predict them.
    n_threads : int
        Worker threads of the cluster.
    max_rows : int
        Most rows in a block (the caller's chunk size).

    Returns
    -------
    blocks : list of (int, int)
        ``(start, stop)`` of each block, covering ``range(n_rows)`` in order.
    groups : list of (int, int)
        ``(first, stop)`` of each group of members, covering
        ``range(n_members)`` in order.

    Examples
    --------
    >>> from skhydra.ensembles._dask import block_plan
    >>> blocks, groups = block_plan(3000, 1, n_threads=2, max_rows=8192)
    >>> len(blocks), blocks[0], blocks[-1], groups
    (8, (0, 375), (2625, 3000), [(0, 1)])
    >>> block_plan(150, 10, n_threads=2, max_rows=8192)
    ([(0, 150)], [(0, 1), (1, 2), (2, 4), (4, 5), (5, 6), (6, 8), (8, 9), (9, 10)])
    """
    n_tasks = TASKS_PER_THREAD * n_threads
    rows = min(max_rows, max(MIN_BLOCK_ROWS, -(-n_rows // n_tasks)))
    blocks = [(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]
    n_groups = max(1, min(n_members, -(-n_tasks // max(len(blocks), 1))))
    return blocks, even_groups(n_members, n_groups)


def even_groups(n_items, n_groups):
    """``(first, stop)`` of ``n_groups`` consecutive groups of ``n_items``, sizes within one.

    Examples
    --------
    >>> from skhydra.ensembles._dask import even_groups
    >>> even_groups(5, 2)
    [(0, 2), (2, 5)]
    """
    bounds = np.linspace(0, n_items, n_groups + 1).round().astype(int).tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def map_blocks(backend, func, shared, blocks, groups, max_tasks):
    """``func(shared, rows, first, stop)`` for every block and group, on the workers.

    Parameters
    ----------
    backend : joblib._dask.DaskDistributedBackend
        Its client submits the tasks (with the backend's ``submit`` options).
    func : callable
        Importable on the workers; takes the shared object, a block of rows
        and a group of members ``(first, stop)``.
    shared : object
        Sent to every worker once (scattered), not with each task.
    blocks : iterable of (int, int, rows)
        ``(start, stop, rows)`` of each block, in order; consumed lazily.
    groups : list of (int, int)
        The groups of members; each block gets one task per group.
    max_tasks : int
        Tasks submitted and not yet consumed, at most (at least one block's).

    Yields
    ------
    start, stop : int
        The block's rows.
    parts : list
        ``func``'s results for each group, in the order of ``groups``.
    """
    client = backend.client
    options = getattr(backend, "submit_kwargs", {})
    name = func.__name__
    # broadcast: every worker needs the shared object (the teacher).
    shared = client.scatter(_Whole(shared), broadcast=True, hash=False)
    blocks = iter(blocks)
    pending = deque()

    def submit(start, stop, rows):
        rows = client.scatter(_Whole(rows), hash=False)
        futures = [
            client.submit(
                _call, func, shared, rows, first, last, key=f"{name}-{uuid4().hex}", **options
            )
            for first, last in groups
        ]
        pending.append((start, stop, futures))

    try:
        for block in islice(blocks, max(1, max_tasks // len(groups))):
            submit(*block)
        while pending:
            start, stop, futures = pending.popleft()
            parts = client.gather(futures)
            # The next block goes out before this one is handed over, so that the
            # workers keep busy while the caller stores it.
            for block in islice(blocks, 1):
                submit(*block)
            yield start, stop, parts
    finally:
        client.cancel([f for _, _, futures in pending for f in futures] + [shared])


def _call(func, shared, rows, first, stop):
    return func(shared.obj, rows.obj, first, stop)


class _Whole:
    """An object that travels between processes pickled in one piece.

    distributed sends an object's large arrays as separate buffers of a
    message, where they may land at an offset misaligned for their dtype:
    numpy's matmul then skips BLAS and rounds differently, and a worker's
    predictions differ from this process's in the last bits (seen with the
    rows of a DataFrame). Unpickled from one piece, every array gets memory
    of its own, aligned, as in any process that unpickles it.
    """

    def __init__(self, obj):
        self.obj = obj

    def __sizeof__(self):
        # What Dask's memory accounting on the workers sees.
        from dask.sizeof import sizeof

        return sizeof(self.obj)

    def __reduce__(self):
        import cloudpickle  # a dependency of distributed

        return _whole, (cloudpickle.dumps(self.obj),)


def _whole(payload):
    return _Whole(pickle.loads(payload))
