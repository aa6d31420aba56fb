"""The ranking evaluation of issue 12 on the two seed snapshots (tests/data/000_*, 001_*).

For each keyword: the profile is its first 10 papers in the older snapshot; the candidates are
all papers of the newer one, with the keyword phrase removed from every title and abstract;
the score is precision@10 of that keyword's own papers (a paper under two keywords counts for
both). Three rankers: by date (newest first), a plain TF-IDF centroid (scikit-learn defaults)
and digestd's (digestd/core/rank.py). `python tests/rankeval.py` prints the markdown table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from fixtures import SEED_000, SEED_001, FixturePaper, parse_seed
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from digestd.core.rank import Relevance, paper_text

Ranker = Callable[[Sequence[FixturePaper], Sequence[FixturePaper], str], list[float]]
PROFILE = 10
K = 10


def _without(text: str, phrase: str) -> str:
    return re.sub(re.escape(phrase), " ", text, flags=re.IGNORECASE)


def by_date(profile: Sequence[FixturePaper], candidates: Sequence[FixturePaper], kw: str) -> list[float]:
    """Newest first: what digestd does without interests."""
    order = sorted(range(len(candidates)), key=lambda i: candidates[i].updated)
    rank = {i: r for r, i in enumerate(order)}
    return [float(rank[i]) for i in range(len(candidates))]


def plain_centroid(profile: Sequence[FixturePaper], candidates: Sequence[FixturePaper], kw: str) -> list[float]:
    """The reference: scikit-learn's TfidfVectorizer() as is, cosine to the profile's mean."""
    prof = [_without(f"{p.title} {p.summary}", kw) for p in profile]
    cand = [_without(f"{p.title} {p.summary}", kw) for p in candidates]
    vec = TfidfVectorizer().fit(prof + cand)
    centroid = normalize(np.asarray(vec.transform(prof).mean(axis=0)))
    return [float(x) for x in (vec.transform(cand) @ centroid.T).ravel()]


def digestd_ranker(profile: Sequence[FixturePaper], candidates: Sequence[FixturePaper], kw: str) -> list[float]:
    """digestd's own path: Relevance fitted on the texts, one profile, one product."""
    prof = [_without(paper_text(p.title, p.summary), kw) for p in profile]
    cand = [_without(paper_text(p.title, p.summary), kw) for p in candidates]
    rel = Relevance(prof + cand)
    interests, candidates = rel.rows(range(len(prof))), rel.rows(range(len(prof), len(prof) + len(cand)))
    ((_, scores),) = list(Relevance.scores([list(range(len(prof)))], interests, candidates))
    return [float(x) for x in scores[0]]


def evaluate(ranker: Ranker) -> dict[str, float]:
    """precision@10 per keyword."""
    old, new = parse_seed(SEED_000), parse_seed(SEED_001)
    unique = {p.id: p for papers in new.values() for p in papers}
    candidates = sorted(unique.values(), key=lambda p: p.updated, reverse=True)  # newest first
    out: dict[str, float] = {}
    for kw, papers in old.items():
        scores = ranker(papers[:PROFILE], candidates, kw)
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])  # ties: newest first
        own = {p.id for p in new[kw]}
        out[kw] = sum(candidates[i].id in own for i in order[:K]) / K
    return out


RANKERS: dict[str, Ranker] = {"by date": by_date, "plain TF-IDF centroid": plain_centroid, "digestd": digestd_ranker}


def table() -> str:
    """The markdown table of docs/benchmarks.md."""
    results = {name: evaluate(r) for name, r in RANKERS.items()}
    kws = list(next(iter(results.values())))
    lines = ["| keyword | " + " | ".join(RANKERS) + " |", "| --- |" + " ---: |" * len(RANKERS)]
    for kw in kws:
        lines.append(f"| {kw} | " + " | ".join(f"{results[n][kw]:.1f}" for n in RANKERS) + " |")
    means = [sum(results[n].values()) / len(kws) for n in RANKERS]
    lines.append("| **mean** | " + " | ".join(f"**{m:.3f}**" for m in means) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
