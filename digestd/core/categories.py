"""arXiv's category taxonomy (https://arxiv.org/category_taxonomy), for refusing a category that
does not exist: a typo like `cs.VC` would otherwise filter out every paper, silently."""

from __future__ import annotations

_GROUPS: dict[str, str] = {
    "cs": "AI AR CC CE CG CL CR CV CY DB DC DL DM DS ET FL GL GR GT HC IR IT LG LO MA MM MS NA NE "
    "NI OH OS PF PL RO SC SD SE SI SY",
    "econ": "EM GN TH",
    "eess": "AS IV SP SY",
    "math": "AC AG AP AT CA CO CT CV DG DS FA GM GN GR GT HO IT KT LO MG MP NA NT OA OC PR QA RA "
    "RT SG SP ST",
    "astro-ph": "CO EP GA HE IM SR",
    "cond-mat": "dis-nn mes-hall mtrl-sci other quant-gas soft stat-mech str-el supr-con",
    "nlin": "AO CD CG PS SI",
    "physics": "acc-ph ao-ph app-ph atm-clus atom-ph bio-ph chem-ph class-ph comp-ph data-an ed-ph "
    "flu-dyn gen-ph geo-ph hist-ph ins-det med-ph optics plasm-ph pop-ph soc-ph space-ph",
    "q-bio": "BM CB GN MN NC OT PE QM SC TO",
    "q-fin": "CP EC GN MF PM PR RM ST TR",
    "stat": "AP CO ME ML OT TH",
}
# Archives without subject classes, and the old archives arXiv still answers `cat:` queries for.
_ARCHIVES = (
    "gr-qc hep-ex hep-lat hep-ph hep-th math-ph nucl-ex nucl-th quant-ph astro-ph cond-mat "
    "acc-phys adap-org alg-geom ao-sci atom-ph bayes-an chao-dyn chem-ph cmp-lg comp-gas dg-ga "
    "funct-an mtrl-th patt-sol plasm-ph q-alg solv-int supr-con"
)

CATEGORIES: frozenset[str] = frozenset(
    [f"{group}.{sub}" for group, subs in _GROUPS.items() for sub in subs.split()] + _ARCHIVES.split()
)


def category_problem(category: object) -> str | None:
    """Why `category` is not an arXiv category, or None (case matters: arXiv's is `cs.CV`)."""
    if not isinstance(category, str) or not category.strip():
        return "a category must be non-empty text like cs.CV"
    if category in CATEGORIES:
        return None
    close = [c for c in CATEGORIES if c.casefold() == category.casefold()]
    letters = sorted(category.casefold())  # else the same letters in another order: cs.VC, cs.CV
    close = close or sorted(c for c in CATEGORIES if sorted(c.casefold()) == letters)
    hint = f" (did you mean {close[0]}?)" if close else " (see https://arxiv.org/category_taxonomy)"
    return f"{category!r} is not an arXiv category{hint}"
