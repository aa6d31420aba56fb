"""Relevance of papers to a reader's interests: TF-IDF on titles and abstracts (scikit-learn).

Measured against a plain TF-IDF centroid and against ordering by date on the two seed
snapshots (docs/benchmarks.md, tests/test_rank_eval.py): words and word pairs without English
stop words beat both. A reader's profile is the centroid of their interest papers' vectors;
relevance is its cosine with a paper. Everything is a sparse matrix product over all readers
at once, in slices of readers so memory stays bounded (bench/rank_bench.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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
        mix = _mixing(members, interests.shape[0])
        shared = _shared(interests, candidates)
        for start in range(0, mix.shape[0], per_slice):
            part = mix[start : start + per_slice]
            yield start, _cosines(part, shared, _centroid_norms(part, interests))


@dataclass(frozen=True, slots=True)
class Scorer:
    """What ranking any digest of a run needs, made once while the plan is made (stages/follow.py
    fits in a child on the other core): each candidate paper's column, each reader's row, the
    readers' mixing of interest papers, the interest-by-candidate cosines, and each reader's
    centroid length."""

    columns: dict[str, int]  # candidate paper id -> column of `shared`
    readers: dict[str, int]  # reader's address as configured -> row of `mix` and `norms`
    mix: sparse.csr_matrix  # readers x interest papers, 1/k for each of a reader's k
    shared: NDArray[np.float32]  # interest papers x (candidates + 1): the last column is 0
    norms: NDArray[np.float32]  # |centroid| of each reader (0: no interest paper known)

    def scores(self, readers: Sequence[str]) -> NDArray[np.float32]:
        """These readers x (candidates + 1) cosines; a paper without a column takes the last, 0."""
        rows = [self.readers[r] for r in readers]
        return _cosines(self.mix[rows], self.shared, self.norms[rows])

    def columns_of(self, ids: Sequence[str]) -> NDArray[np.intp]:
        """The columns of these papers in `scores` (the zero column for a paper not among them)."""
        import numpy as np

        zero = self.shared.shape[1] - 1
        return np.fromiter((self.columns.get(p, zero) for p in ids), np.intp, len(ids))


@dataclass(frozen=True, slots=True)
class Fitted:
    """The fit of one run's texts: what the products and the readers' centroids are made from."""

    columns: dict[str, int]  # candidate paper id -> row of `candidates`
    readers: dict[str, int]  # reader's address -> row of `mix`
    mix: sparse.csr_matrix  # readers x interest papers
    interests: sparse.csr_matrix  # the interest papers' vectors
    candidates: sparse.csr_matrix  # the candidate papers' vectors


def scorer_parts(candidates: Mapping[str, str],
                 profiles: Mapping[str, Sequence[str]]) -> Iterator[Fitted | NDArray[np.float32]]:
    """The fit of these candidate papers (id -> text) and readers (address -> the texts of their
    interest papers; equal texts are one paper), then the readers' centroid lengths: two parts,
    so that whoever receives the first can make the products while the second is made."""
    interest_texts = list(dict.fromkeys(t for texts in profiles.values() for t in texts))
    where = {t: n for n, t in enumerate(interest_texts)}
    cand_ids = list(candidates)
    rel = Relevance([candidates[c] for c in cand_ids] + interest_texts)
    interests = rel.rows(range(len(cand_ids), len(cand_ids) + len(interest_texts)))
    fitted = Fitted(
        columns={c: n for n, c in enumerate(cand_ids)},
        readers={r: n for n, r in enumerate(profiles)},
        mix=_mixing([[where[t] for t in texts] for texts in profiles.values()], len(interest_texts)),
        interests=interests,
        candidates=rel.rows(range(len(cand_ids))),
    )
    del rel  # the whole matrix: its two parts are all the products need
    yield fitted
    yield _centroid_norms(fitted.mix, interests)


def scorer_from(parts: Iterator[Fitted | NDArray[np.float32]]) -> Scorer:
    """The Scorer from scorer_parts' two parts: the interest-by-candidate products are made here,
    while the centroid lengths are made where the parts come from."""
    fitted = next(parts)
    if not isinstance(fitted, Fitted):
        raise TypeError("the first part of a scorer is its fit")
    shared = _shared(fitted.interests, fitted.candidates, zero_column=True)
    norms = next(parts)
    if isinstance(norms, Fitted):
        raise TypeError("the second part of a scorer is its centroid lengths")
    return Scorer(fitted.columns, fitted.readers, fitted.mix, shared, norms)


def make_scorer(candidates: Mapping[str, str], profiles: Mapping[str, Sequence[str]]) -> Scorer:
    """The Scorer of these candidates and readers, made in this process."""
    return scorer_from(scorer_parts(candidates, profiles))


def _shared(interests: sparse.csr_matrix, candidates: sparse.csr_matrix, *,
            zero_column: bool = False) -> NDArray[np.float32]:
    """interests . candidates^T, dense (the product is dense-ish), made in slices of rows."""
    import numpy as np

    out = np.zeros((interests.shape[0], candidates.shape[0] + int(zero_column)), dtype=np.float32)
    candidates_t = candidates.T.tocsc()
    for at in range(0, interests.shape[0], READERS_PER_SLICE):
        out[at : at + READERS_PER_SLICE, : candidates.shape[0]] = (
            interests[at : at + READERS_PER_SLICE] @ candidates_t
        ).toarray()
    return out


def _cosines(part: sparse.csr_matrix, shared: NDArray[np.float32],
             norms: NDArray[np.float32]) -> NDArray[np.float32]:
    """mix_r . shared / |centroid_r| for each reader of `part` (0 where the centroid is 0)."""
    import numpy as np

    block = np.asarray(part @ shared, dtype=np.float32)
    np.divide(block, norms[:, None], out=block, where=norms[:, None] > 0)
    return block


NORMS_PER_SLICE = 64  # readers whose centroids are made at once, only for their lengths


def _centroid_norms(part: sparse.csr_matrix, interests: sparse.csr_matrix) -> NDArray[np.float32]:
    """|mix_r . interests| for each reader of `part`, 64 readers' centroids at a time: 512
    readers' centroids over the whole vocabulary are 27 MB (bench/rank_bench.py), 64 are 3."""
    import numpy as np

    out = np.empty(part.shape[0], dtype=np.float32)
    for at in range(0, part.shape[0], NORMS_PER_SLICE):
        centroids = part[at : at + NORMS_PER_SLICE] @ interests
        # each row's sum of squares straight from the CSR arrays (0.45 s for 10,000 readers,
        # where .multiply().sum() made a matrix more: 0.74 s); the 0 appended lets an empty
        # last row start at the end, and every empty row is set to 0 after
        squares = np.append(np.square(centroids.data), np.float32(0))
        sums = np.add.reduceat(squares, centroids.indptr[:-1])
        sums[np.diff(centroids.indptr) == 0] = 0
        out[at : at + NORMS_PER_SLICE] = sums
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

    return np.asarray(best_first_rows(scores[None, :], k)[0], dtype=np.intp)


def best_first_rows(scores: NDArray[np.float32], k: int | None = None) -> NDArray[np.intp]:
    """best_first for each row of `scores` (readers x papers) at once. The `k` best are exact
    with ties too: every position at least the row's k-th largest value is sorted by value,
    then position, and the first k kept (a partition alone would pick among equals at random)."""
    import numpy as np

    g, n = scores.shape
    if k is None or k >= n:
        return np.argsort(-scores, axis=1, kind="stable")
    if k <= 0:
        return np.zeros((g, 0), dtype=np.intp)
    kth = np.partition(scores, n - k, axis=1)[:, n - k : n - k + 1]  # each row's k-th largest
    rows, cols = np.nonzero(scores >= kth)  # row by row, positions ascending: at least k a row
    order = np.lexsort((cols, -scores[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(g))
    return np.asarray(cols[(starts[:, None] + np.arange(k)).ravel()].reshape(g, k), dtype=np.intp)
