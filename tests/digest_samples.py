"""Real-sized digest content for the render and browser tests (and the docs' example).

`sample_additions()` gives 3 keywords x 10 papers that look like a real day on arXiv (the fourth of
each keyword an update: v3 of a paper first posted in 2024), with the
things that break layouts mixed in: long titles, 40-author lists, long URLs in comments and
abstracts, unbroken 90-character words, `<script>`, quotes and ampersands. The first papers of
each keyword are the ordinary-looking ones, so the screenshots show what a reader usually sees.
"""

from __future__ import annotations

import dataclasses

from digestd.core.models import Paper
from digestd.render.digest import DigestRenderer, group_for_subscriber

KEYWORDS = ["Video Anomaly Detection", "Vision Language Model", "Diffusion Policy"]
DATE = "2026-11-23"
SECRET = b"documentation-example-secret"

_FIRST = ["Wei", "Ana", "Kenji", "Priya", "Lukas", "Chiara", "Omar", "Sofia", "Jun", "Maya", "Tomás",
          "Ingrid", "Arjun", "Hana", "Mateus", "Yusuf", "Elena", "Daniel", "Mei", "Rafael"]
_LAST = ["Zhang", "Kowalska", "Tanaka", "Raghavan", "Becker", "Romano", "Haddad", "Lindqvist", "Park",
         "Cohen", "Alvarez", "Nakamura", "Okonkwo", "Schmidt", "Moreau", "Yilmaz", "Novak", "Ferreira",
         "Chen", "Gupta"]

_TITLES = {
    "Video Anomaly Detection": [
        "Prompt-Guided Video Anomaly Detection with Frozen Vision Language Models",
        "Weakly Supervised Video Anomaly Detection via Temporal Context Aggregation and "
        "Uncertainty-Aware Pseudo-Label Refinement",
        "AnomalyBench-2026: A Large-Scale Multi-Scene Benchmark for Open-World Video Anomaly Detection",
        "Learning What Normal Looks Like: Memory-Augmented Autoencoders Revisited",
        "Real-Time Anomaly Detection in Surveillance Video on Edge Devices",
    ],
    "Vision Language Model": [
        "Do Vision Language Models Understand Time? Probing Temporal Reasoning in Video QA",
        "Efficient Token Pruning for High-Resolution Vision Language Model Inference",
        "Hallucination or Grounding? Measuring Faithfulness of Captions Produced by a Vision Language Model",
        "Small Vision Language Models Are Strong Zero-Shot Document Parsers",
        "Aligning a Vision Language Model with Human Preferences from Pairwise Image Feedback",
    ],
    "Diffusion Policy": [
        "Consistency Distillation for Real-Time Diffusion Policy Control",
        "Diffusion Policy Meets Tactile Sensing: Contact-Rich Manipulation from Few Demonstrations",
        "Hierarchical Diffusion Policy for Long-Horizon Mobile Manipulation",
        "When Does Diffusion Policy Generalise? An Empirical Study across 40 Tasks",
        "Equivariant Diffusion Policy with SE(3) Action Heads",
    ],
}

_SENTENCES = [
    "Existing approaches to {kw} rely on hand-crafted priors that fail to transfer across scenes.",
    "We propose a simple framework that couples a frozen backbone with a lightweight temporal head.",
    "Our method requires no additional annotations and runs in real time on a single GPU.",
    "Extensive experiments on five public benchmarks show consistent gains over strong baselines, "
    "improving the state of the art by 3.1 points on average.",
    "We further analyse failure cases and show that most errors stem from ambiguous ground truth.",
    "Code and models will be released to facilitate future research on {kw}.",
]

_NASTY_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis-" * 2
_LONG_URL = (
    "https://github.com/some-research-lab/a-rather-long-repository-name-for-this-project"
    "/tree/main/configs/experiments/ablation?tab=readme-ov-file&plain=1"
)


def _authors(i: int) -> tuple[str, ...]:
    n = [3, 2, 7, 5, 41, 4, 1, 12, 3, 6][i % 10]
    h = i % 100 + 7 * (i // 100)
    return tuple(f"{_FIRST[(h * 7 + k) % 20]} {_LAST[(h * 3 + k * 5) % 20]}" for k in range(n))


def sample_paper(i: int, kw: str, k: int) -> Paper:
    """Paper number `k` (0-9) of keyword `kw`; the first five look ordinary, the rest are nasty."""
    titles = _TITLES.get(kw, [f"A Study of {kw}"])
    title = titles[k % len(titles)]
    summary = " ".join(s.format(kw=kw.lower()) for s in _SENTENCES)
    comment: str | None = [
        "Accepted to CVPR 2026; 14 pages, 9 figures; code: " + _LONG_URL,
        "12 pages",
        None,
        "Project page: https://example.org/p",
        None,
    ][k % 5]
    if k >= 5:  # what breaks layouts, escaping and wrapping
        title = [
            f"{_NASTY_WORD} {title}",
            f"{title} <script>alert('x')</script> & \"Friends\"",
            title + ": " + "A Very Long Subtitle That Goes On and On, " * 3 + "and Then Ends",
            title,
            f"{title} ({_NASTY_WORD})",
        ][k - 5]
        summary += f" Our code is at {_LONG_URL} and our data at {_LONG_URL}&data=1. {_NASTY_WORD}"
        comment = [
            f"Comment with <b>tags</b> & \"quotes\" and {_LONG_URL}",
            "x" * 120,
            None,
            "Accepted: https://a.example/" + "b" * 150,
            "5 pages",
        ][k - 5]
    version, published = 1 + k % 2, f"{DATE}T{23 - k:02d}:00:00Z"
    if k == 3:  # a revision of a paper first posted long ago: an update (issue 10)
        version, published, comment = 3, "2024-02-08T17:00:00Z", "Accepted by ECCV 2024; v3 adds results on UCF-Crime"
    return Paper(
        id=f"2611.{i:05d}",
        version=version,
        title=title,
        link=f"https://arxiv.org/abs/2611.{i:05d}v{version}",
        pdf=f"https://arxiv.org/pdf/2611.{i:05d}v{version}",
        updated=f"{DATE}T{23 - k:02d}:00:00Z",
        published=published,
        authors=_authors(i),
        summary=summary,
        comment=comment,
        categories=("cs.CV", "cs.LG") if "Policy" not in kw else ("cs.RO", "cs.LG"),
        primary_category="cs.CV" if "Policy" not in kw else "cs.RO",
    )


def sample_additions(per_keyword: int = 10) -> dict[str, list[Paper]]:
    """Additions per keyword; the first paper of the second keyword is shared with the first."""
    adds = {kw: [sample_paper(j * 100 + k, kw, k) for k in range(per_keyword)] for j, kw in enumerate(KEYWORDS)}
    adds[KEYWORDS[1]].insert(1, adds[KEYWORDS[0]][0])
    return adds


def sample_renderer(*, full_abstracts: bool = False, public_url: str | None = "https://papers.example.org",
                    secret: bytes | None = SECRET) -> DigestRenderer:
    return DigestRenderer(
        None, date=DATE, list_name="Daily Papers", sender="Daily Papers <papers@example.org>",
        full_abstracts=full_abstracts, public_url=public_url, secret=secret,
    )


def sample_digest(per_keyword: int = 10, email: str = "ada.lovelace@example.org", *, marks: bool = False,
                  **kw: object) -> tuple[str, str]:
    """(text, html) of a real-sized digest; `marks`: with a reader's marks (issue 12), each
    keyword's second paper "For you", "More like this" links, and "12 more" under the first."""
    renderer = sample_renderer(**kw)  # type: ignore[arg-type]
    sections = group_for_subscriber(KEYWORDS, sample_additions(per_keyword))
    if not marks:
        return renderer.render(email, sections)
    marked = [(k, [dataclasses.replace(e, for_you=i == 1, more_like=f"https://papers.example.org/more/{e.paper.id}")
                   for i, e in enumerate(es)]) for k, es in sections]
    return renderer.render(email, marked, more_in={KEYWORDS[0]: 12})
