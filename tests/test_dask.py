"""Teacher labelling on a Dask cluster, by blocks of rows (skhydra/ensembles/_dask.py).

The block plan is tested here without Dask; everything else runs on a LocalCluster of
two worker processes (marker ``scaleout``: ``pytest -m scaleout``).
"""

import time

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import TINY
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from skorch.callbacks import Callback

from skhydra import HydraDistilledClassifier
from skhydra.ensembles import predict_members, resolve_teacher
from skhydra.ensembles._dask import (
    MIN_BLOCK_ROWS,
    TASKS_PER_THREAD,
    _Whole,
    block_plan,
    dask_backend,
)
from skhydra.ensembles._teacher import Teacher

# -- the block plan (no Dask needed) ---------------------------------------------------


@pytest.mark.parametrize(
    "n_rows, n_members, n_threads, max_rows",
    [
        (3000, 1, 2, 8192),  # a few blocks per thread
        (1_000_000, 1, 2, 8192),  # max_rows caps the blocks
        (150, 10, 2, 8192),  # one block: members split over tasks
        (150, 1, 4, 8192),  # one block, one member: one task
        (5000, 100, 2, 100),  # caller's chunks below the floor
        (2049, 3, 8, 8192),
        (0, 2, 2, 8192),
    ],
)
def test_block_plan_covers_rows_and_members_in_order(n_rows, n_members, n_threads, max_rows):
    blocks, groups = block_plan(n_rows, n_members, n_threads, max_rows)
    # every row exactly once, in order; every member exactly once, in order
    assert [i for start, stop in blocks for i in range(start, stop)] == list(range(n_rows))
    assert [j for first, stop in groups for j in range(first, stop)] == list(range(n_members))
    sizes = [stop - start for start, stop in blocks]
    assert all(0 < size <= max_rows for size in sizes)
    # all blocks but the last have the same size, the floor unless the cap is lower
    assert len(set(sizes[:-1])) <= 1
    assert all(size >= min(MIN_BLOCK_ROWS, max_rows) for size in sizes[:-1])
    n_tasks = len(blocks) * len(groups)
    # every thread gets several tasks when rows or members allow it
    possible = -(-n_rows // MIN_BLOCK_ROWS) * n_members
    assert n_tasks >= min(TASKS_PER_THREAD * n_threads, possible)
    # and members are split only when the rows give too few blocks
    assert len(groups) == 1 or len(blocks) < TASKS_PER_THREAD * n_threads


def test_no_dask_backend_without_dask_config():
    assert dask_backend(2) == (None, 0)
    with joblib.parallel_config("threading"):
        assert dask_backend(2) == (None, 0)


# -- on a LocalCluster --------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def mlp(digits):
    return MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0).fit(*digits)


@pytest.fixture(scope="module")
def local_student(digits, mlp):
    return HydraDistilledClassifier([mlp], n_jobs=2, **TINY).fit(digits[0])


class Spy:
    """Records the client's scatter and submit calls for the teacher's blocks (and
    still makes them); other calls (a member's own joblib calls) pass through."""

    def __init__(self, client, monkeypatch):
        self.scattered, self.submitted = [], []
        scatter, submit = client.scatter, client.submit

        def spy_scatter(data, *args, **kwargs):
            if isinstance(data, _Whole):
                self.scattered.append(data.obj)
            return scatter(data, *args, **kwargs)

        def spy_submit(func, *args, key=None, **kwargs):
            if str(key).startswith("_predict_block"):
                self.submitted.append(args)
            return submit(func, *args, key=key, **kwargs)

        monkeypatch.setattr(client, "scatter", spy_scatter)
        monkeypatch.setattr(client, "submit", spy_submit)


def _block_workers(records):
    """How many blocks each worker computed, from a task stream."""
    counts = {}
    for record in records:
        if record["key"].startswith("_predict_block"):
            counts[record["worker"]] = counts.get(record["worker"], 0) + 1
    return counts


@pytest.mark.scaleout
def test_one_member_ensemble_labels_on_every_worker(client, digits, mlp, local_student):
    from distributed import get_task_stream

    X, _ = digits
    with get_task_stream(client) as stream, joblib.parallel_config("dask"):
        student = HydraDistilledClassifier([mlp], n_jobs=2, **TINY).fit(X)
    counts = _block_workers(stream.data)
    # both workers computed several blocks of the single member's predictions
    assert set(counts) == set(client.scheduler_info()["workers"])
    assert all(count >= 2 for count in counts.values()), counts
    # and the student is the one fitted without Dask
    np.testing.assert_array_equal(student.predict_proba(X), local_student.predict_proba(X))
    pd.testing.assert_frame_equal(
        student.predict_uncertainty(X), local_student.predict_uncertainty(X)
    )


@pytest.fixture(scope="module")
def diabetes_members():
    X, y = load_diabetes(return_X_y=True)
    return X, y, [Ridge(alpha=0.1).fit(X, y), KNeighborsRegressor(5).fit(X, y)]


@pytest.mark.scaleout
@pytest.mark.parametrize("container", ["array", "dataframe", "sparse"])
def test_regressor_members_match_local_and_ship_blocks_only(
    client, diabetes_members, container, monkeypatch
):
    X, y, _ = diabetes_members
    if container == "dataframe":
        X = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    elif container == "sparse":
        X = sp.csr_matrix(X)
    members = [Ridge(alpha=0.1).fit(X, y), KNeighborsRegressor(5, algorithm="brute").fit(X, y)]
    local = predict_members(members, X, n_jobs=2)
    spy = Spy(client, monkeypatch)
    with joblib.parallel_config("dask"):
        on_dask = predict_members(members, X, n_jobs=2)
    for a, b in zip(on_dask, local, strict=True):
        np.testing.assert_array_equal(a, b)
    # the teacher went out once; then each block once, as a slice of X, not X
    teacher, *blocks = spy.scattered
    assert isinstance(teacher, Teacher)
    assert not any(isinstance(block, Teacher) for block in blocks)
    assert all(type(block) is type(X) for block in blocks)
    assert [block.shape[0] for block in blocks] == [256, X.shape[0] - 256]
    # 2 blocks of diabetes' 442 rows x 2 groups of one member: 4 tasks for 2 threads
    assert len(spy.submitted) == 4
    # each task took the scattered teacher and block (futures), not the objects
    assert all(
        not isinstance(arg, (Teacher, np.ndarray, pd.DataFrame)) and not sp.issparse(arg)
        for args in spy.submitted
        for arg in args
    )
    assert len({args[1].key for args in spy.submitted}) == 1


@pytest.mark.scaleout
def test_blocks_stream_in_order_with_a_bounded_lead(client, diabetes_members, monkeypatch):
    X, _, members = diabetes_members
    teacher = resolve_teacher(members)
    local_means = teacher.predict_members(X)[0]
    spy = Spy(client, monkeypatch)
    seen = []
    with joblib.parallel_config("dask"):
        for start, stop, (means, _) in teacher.iter_predictions(X, chunk_rows=20, n_jobs=2):
            # a slow consumer: the workers may finish what was submitted, no more
            time.sleep(0.02)
            seen.append((start, stop, len(spy.submitted)))
            np.testing.assert_array_equal(means, local_means[start:stop])
    # blocks of chunk_rows rows, in row order
    expected = [(a, min(a + 20, len(X))) for a in range(0, len(X), 20)]
    assert [(a, b) for a, b, _ in seen] == expected
    # one task per block (enough blocks: members stay together): two per thread ahead
    # of the consumer, plus the next one, submitted before a block is handed over
    n_blocks = len(expected)
    assert [submitted for _, _, submitted in seen] == [
        min(n_blocks, consumed + 2 * 2) for consumed in range(1, n_blocks + 1)
    ]


@pytest.mark.scaleout
def test_memory_budget_puts_targets_on_disk_under_dask(client, digits, mlp, local_student):
    kinds = []

    class TargetKinds(Callback):
        def on_train_begin(self, net, X=None, **kwargs):
            kinds.append({type(v).__name__ for k, v in X.targets.items() if k != "weight"})

    from distributed import get_task_stream

    X, _ = digits
    with get_task_stream(client) as stream, joblib.parallel_config("dask"):
        student = HydraDistilledClassifier(
            [mlp], n_jobs=2, memory_budget=0, callbacks=[TargetKinds()], **TINY
        ).fit(X)
    assert len(_block_workers(stream.data)) == 2
    assert kinds == [{"DiskArray"}, {"DiskArray"}]
    np.testing.assert_array_equal(student.predict_proba(X), local_student.predict_proba(X))


@pytest.mark.scaleout
def test_n_jobs_one_and_dask_tasks_stay_local(client, diabetes_members, monkeypatch):
    X, _, members = diabetes_members
    spy = Spy(client, monkeypatch)
    with joblib.parallel_config("dask"):
        predict_members(members[:1], X, n_jobs=1)
        assert dask_backend(1) == (None, 1)
        assert dask_backend(None)[1] == 2
    assert spy.submitted == []

    def in_task():
        with joblib.parallel_config("dask"):
            return dask_backend(2)[0] is None

    # inside a Dask task (e.g. a GridSearchCV fit under the dask backend) rows stay local
    assert client.submit(in_task, pure=False).result()


@pytest.mark.scaleout
def test_member_errors_surface_and_release_the_cluster(client, diabetes_members):
    from distributed import get_task_stream

    X, y, _ = diabetes_members
    broken = Ridge().fit(X, y)
    broken.coef_ = np.full_like(broken.coef_, np.inf)
    with (
        get_task_stream(client) as stream,
        joblib.parallel_config("dask"),
        pytest.raises(ValueError, match="Member 1 of the ensemble predicted NaN or infinite"),
    ):
        predict_members([Ridge().fit(X, y), broken], X, n_jobs=2)
    # raised on a worker
    assert any(
        r["key"].startswith("_predict_block") and r["status"] == "error" for r in stream.data
    )
    # the teacher and pending blocks were released, not left on the workers
    deadline = time.monotonic() + 10
    while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
