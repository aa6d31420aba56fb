"""Relevance of papers to a reader's interests: TF-IDF on titles and abstracts (scikit-learn).

Measured against a plain TF-IDF centroid and against ordering by date on the two seed
snapshots (docs/benchmarks.md, tests/test_rank_eval.py): words and word pairs without English
stop words beat both. A reader's profile is the centroid of their interest papers' vectors;
relevance is its cosine with a paper. Everything is a sparse matrix product over all readers
at once, in slices of readers so memory stays bounded (bench/rank_bench.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when first used: scikit-learn costs seconds to import, and most
    # commands (and runs without interests) never rank
    import numpy as np
    from numpy.typing import NDArray
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

FOR_YOU_BAR = 0.12  # cosine above which a paper is "for you": on the seeds, 3 in 4 of a distinct
# topic's own papers and under 1 in 100 of the others (docs/benchmarks.md)
READERS_PER_SLICE = 512  # readers scored per matrix product: 512 x 2000 float32 = 4 MB, and
# their centroids (512 x some thousand terms each) a few tens of MB


def paper_text(title: str, summary: str) -> str:
    """The text a paper is judged by: its title (twice: it says what the paper is) and abstract."""
    return f"{title} {title} {summary}"


def make_vectorizer() -> TfidfVectorizer:
    """The chosen method: words and word pairs, English stop words dropped."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(stop_words="english", ngram_range=(1, 2), dtype=np.float32)


class Relevance:
    """One run's vocabulary and vectors: fitted on the papers it ranks and the interest papers
    it ranks by, each text tokenised once (`rows` picks vectors by position in `corpus`)."""

    def __init__(self, corpus: Sequence[str]) -> None:
        from scipy import sparse

        # The vectorizer (its vocabulary) is not kept: only the vectors are used, and its
        # 50,000 term strings, made among millions of passing tokens, would hold their
        # memory (100 MB at 7,000 texts, bench/rank_bench.py).
        self._matrix = sparse.csr_matrix(make_vectorizer().fit_transform(list(corpus) or [""]))

    def rows(self, positions: Sequence[int]) -> sparse.csr_matrix:
        """The L2-normalised vectors of these texts of the corpus."""
        from scipy import sparse

        return sparse.csr_matrix(self._matrix[list(positions)])

    @staticmethod
    def scores(
        members: Sequence[Sequence[int]],
        interests: sparse.csr_matrix,
        candidates: sparse.csr_matrix,
        per_slice: int = READERS_PER_SLICE,
    ) -> Iterator[tuple[int, NDArray[np.float32]]]:
        """(first reader, readers x candidates cosines) slice by slice. Reader r's profile is the
        mean of the `interests` rows `members[r]`; its cosine with every candidate is
        mix_r . (interests . candidates^T) / |mix_r . interests|: the interest-by-candidate
        product is made once, so a reader costs a few sparse rows, not a profile of the whole
        vocabulary (a reader without interests scores 0 everywhere)."""
        import numpy as np

        mix = _mixing(members, interests.shape[0])
        shared = np.empty((interests.shape[0], candidates.shape[0]), dtype=np.float32)
        candidates_t = candidates.T.tocsc()
        for at in range(0, interests.shape[0], per_slice):  # in slices: the sparse product is dense-ish
            shared[at : at + per_slice] = (interests[at : at + per_slice] @ candidates_t).toarray()
        for start in range(0, mix.shape[0], per_slice):
            part = mix[start : start + per_slice]
            norms = _centroid_norms(part, interests)
            block = np.asarray(part @ shared, dtype=np.float32)
            np.divide(block, norms[:, None], out=block, where=norms[:, None] > 0)
            yield start, block


NORMS_PER_SLICE = 64  # readers whose centroids are made at once, only for their lengths


def _centroid_norms(part: sparse.csr_matrix, interests: sparse.csr_matrix) -> NDArray[np.float32]:
    """|mix_r . interests| for each reader of `part`, 64 readers' centroids at a time: 512
    readers' centroids over the whole vocabulary are 27 MB (bench/rank_bench.py), 64 are 3."""
    import numpy as np

    out = np.empty(part.shape[0], dtype=np.float32)
    for at in range(0, part.shape[0], NORMS_PER_SLICE):
        centroids = part[at : at + NORMS_PER_SLICE] @ interests
        out[at : at + NORMS_PER_SLICE] = np.asarray(centroids.multiply(centroids).sum(axis=1)).ravel()
    return np.sqrt(out)


def _mixing(members: Sequence[Sequence[int]], n: int) -> sparse.csr_matrix:
    """Readers x interest papers, 1/k for each of a reader's k papers."""
    import numpy as np
    from scipy import sparse

    rows, cols, vals = [], [], []
    for r, idx in enumerate(members):
        unique = sorted(set(idx))
        if not unique:
            continue
        rows += [r] * len(unique)
        cols += unique
        vals += [1.0 / len(unique)] * len(unique)
    return sparse.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(len(members), n))


def best_first(scores: NDArray[np.float32], k: int | None = None) -> NDArray[np.intp]:
    """The positions of `scores` best first (equal scores keep their order: newest first), all
    of them or the `k` best: one reader's keyword, without a Python loop over its papers."""
    import numpy as np

    n = scores.shape[0]
    if k is not None and k < n:
        part = np.argpartition(-scores, k - 1)[:k] if k > 0 else np.zeros(0, dtype=np.intp)
        return part[np.lexsort((part, -scores[part]))]
    return np.argsort(-scores, kind="stable")
