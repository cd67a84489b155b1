"""Members onto heads (assign_heads) and the chunked collection of head targets."""

import numpy as np
import pytest

from skhydra._storage import DiskArray, RowStore
from skhydra._targets import assign_heads, collect_targets


def test_member_m_goes_to_head_m_mod_n_heads():
    heads = assign_heads(7, 3)
    np.testing.assert_array_equal(heads.member_heads, [0, 1, 2, 0, 1, 2, 0])
    np.testing.assert_allclose(heads.head_weights, [3 / 7, 2 / 7, 2 / 7])
    # Head 0 mixes members 0, 3 and 6 equally; nothing else.
    np.testing.assert_allclose(heads.mixing[0], [1 / 3, 0, 0, 1 / 3, 0, 0, 1 / 3])
    np.testing.assert_allclose(heads.mixing.sum(axis=1), 1.0)
    assert not heads.one_member_per_head


def test_member_weights_weigh_heads_and_mixtures():
    weights = np.array([0.5, 0.25, 0.125, 0.125])
    heads = assign_heads(4, 2, weights)
    np.testing.assert_allclose(heads.head_weights, [0.625, 0.375])
    np.testing.assert_allclose(heads.mixing[0], [0.8, 0, 0.2, 0])
    np.testing.assert_allclose(heads.mixing[1], [0, 2 / 3, 0, 1 / 3])
    np.testing.assert_allclose(heads.member_weights, weights)


def test_one_head_per_member_keeps_each_member():
    heads = assign_heads(3, 3)
    assert heads.one_member_per_head
    members = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal(heads.head_targets(members), members)
    np.testing.assert_allclose(heads.mean_target(members), members.mean(axis=1, keepdims=True))


def test_head_targets_mix_members_by_hand():
    members = np.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])  # (1 row, 3 members, 2)
    heads = assign_heads(3, 2)
    np.testing.assert_allclose(heads.head_targets(members), [[[0.75, 0.25], [0.0, 1.0]]])
    np.testing.assert_allclose(heads.mean_target(members), [[[0.5, 0.5]]])


def test_unknown_member_values_stay_in_their_own_head():
    values = np.array([[1.0, 2.0, np.nan, 4.0]])  # member 2 gives no value
    heads = assign_heads(4, 2)  # head 0: members 0, 2; head 1: members 1, 3
    mixed = heads.head_targets(values)
    assert np.isnan(mixed[0, 0])
    assert mixed[0, 1] == pytest.approx(3.0)
    assert np.isnan(heads.mean_target(values)).all()


class _Recorder:
    """A target encoding that records its calls and returns the rows' numbers."""

    def __init__(self):
        self.calls = []

    def encode(self, predictions, heads, y):
        self.calls.append((len(predictions), None if y is None else y.copy()))
        rows = predictions[:, 0]
        return {"a": rows.astype(np.float32)}, {"b": np.stack([rows, -rows], axis=1)}


@pytest.mark.parametrize("budget", [None, 0], ids=["ram", "disk"])
def test_collect_targets_writes_every_chunk_in_place(tmp_path, budget):
    n_rows = 10
    chunks = [(s, min(s + 4, n_rows), np.arange(s, min(s + 4, n_rows))[:, None]) for s in (0, 4, 8)]
    encoding = _Recorder()
    y = np.arange(n_rows, dtype=float) * 10
    with RowStore(budget, folder=tmp_path) as store:
        phase1, phase2 = collect_targets(chunks, encoding, assign_heads(2, 1), y, n_rows, store)
        expected_type = np.ndarray if budget is None else DiskArray
        assert isinstance(phase1["a"], expected_type)
        np.testing.assert_array_equal(phase1["a"][:], np.arange(n_rows))
        np.testing.assert_array_equal(phase2["b"][:, 1], -np.arange(n_rows))
        assert phase1["a"][:].dtype == np.float32 and phase2["b"][:].shape == (n_rows, 2)
    # Each chunk's encoding saw that chunk's observed targets.
    assert [n for n, _ in encoding.calls] == [4, 4, 2]
    np.testing.assert_array_equal(encoding.calls[2][1], [80.0, 90.0])


def test_rank_matching_sends_consecutive_ranks_to_a_head():
    heads = assign_heads(6, 3, rank=True)
    assert heads.rank
    np.testing.assert_array_equal(heads.member_heads, [0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(heads.mixing[1], [0, 0, 0.5, 0.5, 0, 0])
    with pytest.raises(ValueError, match="equally weighted"):
        assign_heads(3, 3, np.array([0.5, 0.25, 0.25]), rank=True)


def test_ranked_sorts_members_per_row_and_keeps_the_mean():
    values = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    extra = values * 10
    by_rank, extra_by_rank = assign_heads(3, 3, rank=True).ranked(values, values, extra)
    np.testing.assert_array_equal(by_rank, [[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]])
    np.testing.assert_array_equal(extra_by_rank, by_rank * 10)  # sorted together
    np.testing.assert_array_equal(assign_heads(3, 3).ranked(values, values), values)
    # Consecutive ranks share a head: ranks 0 and 1 in head 0, rank 2 in head 1.
    ranked = assign_heads(3, 2, rank=True)
    np.testing.assert_allclose(
        ranked.head_targets(ranked.ranked(values, values)), [[1.5, 3.0], [-0.5, 5.0]]
    )
