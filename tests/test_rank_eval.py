"""Issue 12, point 4: the ranking evaluation on the seed snapshots, kept with its thresholds:
per keyword at least a plain TF-IDF centroid, on the mean at least twice ordering by date."""

from __future__ import annotations

import numpy as np
import rankeval
from scipy import sparse
from sklearn.preprocessing import normalize

from digestd.core.rank import FOR_YOU_BAR, Relevance, best_first


def test_digestd_ranks_at_least_as_well_as_the_references() -> None:
    ours = rankeval.evaluate(rankeval.digestd_ranker)
    plain = rankeval.evaluate(rankeval.plain_centroid)
    dates = rankeval.evaluate(rankeval.by_date)
    assert len(ours) == 4
    for kw in ours:
        assert ours[kw] >= plain[kw], (kw, ours[kw], plain[kw])
    assert sum(ours.values()) >= 2 * sum(dates.values()), (ours, dates)


def test_a_reader_without_interests_scores_zero_and_keeps_date_order() -> None:
    texts = ["graph neural networks for molecules", "video anomaly detection in the wild",
             "anomaly detection in surveillance video"]
    rel = Relevance(texts)
    ((_, scores),) = list(Relevance.scores([[0], []], rel.rows([2]), rel.rows([0, 1])))
    assert scores[1].tolist() == [0.0, 0.0]
    assert scores[0][1] > FOR_YOU_BAR > scores[0][0]
    assert best_first(scores[0]).tolist() == [1, 0]
    assert best_first(scores[1]).tolist() == [0, 1]  # ties keep date order


def test_the_factored_product_equals_cosine_to_the_centroid_and_slices_agree() -> None:
    rng = np.random.default_rng(7)
    interests = normalize(sparse.random(30, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32))
    cands = normalize(sparse.random(40, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32))
    members = [list(rng.choice(30, size=int(rng.integers(1, 6)), replace=False)) for _ in range(25)]
    whole = np.vstack([b for _, b in Relevance.scores(members, sparse.csr_matrix(interests),
                                                       sparse.csr_matrix(cands), per_slice=1000)])
    sliced = np.vstack([b for _, b in Relevance.scores(members, sparse.csr_matrix(interests),
                                                        sparse.csr_matrix(cands), per_slice=7)])
    dense_i, dense_c = interests.toarray(), cands.toarray()
    for r, idx in enumerate(members):
        centroid = dense_i[sorted(set(idx))].mean(axis=0)
        norm = np.linalg.norm(centroid)
        expected = dense_c @ centroid / norm if norm else np.zeros(40)
        assert np.allclose(whole[r], expected, atol=1e-5)
    assert np.allclose(whole, sliced)
    for row in whole[:5]:
        assert list(best_first(row, 5)) == list(np.argsort(-row, kind="stable")[:5])
        assert list(best_first(row)) == list(np.argsort(-row, kind="stable"))


def test_the_k_best_of_many_rows_at_once_are_exact_with_ties() -> None:
    """Equal scores keep their order (newest first), at the k-th place too, for every row."""
    from digestd.core.rank import best_first_rows

    rows = np.array([[0.5, 0.2, 0.5, 0.5, 0.1], [0, 0, 0, 0, 0], [0.1, 0.3, 0.3, 0.2, 0.3]], dtype=np.float32)
    assert best_first_rows(rows, 2).tolist() == [[0, 2], [0, 1], [1, 2]]
    assert best_first_rows(rows, 0).shape == (3, 0)
    rng = np.random.default_rng(3)
    tied = np.round(rng.random((200, 60)), 1).astype(np.float32)  # many equal values a row
    for k in (1, 5, 15, 59, 60, None):
        expected = np.argsort(-tied, axis=1, kind="stable")[:, :k]
        assert np.array_equal(best_first_rows(tied, k), expected), k
        assert list(best_first(tied[7], k)) == list(expected[7])


def test_centroid_lengths_hold_for_readers_without_papers_anywhere_in_a_slice() -> None:
    from digestd.core.rank import NORMS_PER_SLICE, _centroid_norms, _mixing

    rng = np.random.default_rng(1)
    interests = sparse.csr_matrix(sparse.random(50, 80, density=0.1, random_state=rng, dtype=np.float32))
    members: list[list[int]] = [[], [1, 2], [], [3, 4, 5]] * NORMS_PER_SLICE + [[7], []]  # empty first, between, last
    dense = (_mixing(members, 50) @ interests).toarray()
    expected = np.sqrt((dense**2).sum(axis=1))
    assert np.allclose(_centroid_norms(_mixing(members, 50), interests), expected, atol=1e-6)
    assert expected[1] > 0 and expected[-1] == 0
