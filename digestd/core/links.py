"""Which links digestd may write: nothing from arXiv is trusted as a link or as markup.

A paper's own links (abstract page, PDF) are kept only when they are plain http(s) URLs of
that very paper on arXiv; anything else is rebuilt from the paper's id. A URL found in an
entry's text (its comment) becomes a link only on a few well-known hosts, normalised and
percent-encoded; any other URL stays text. Pure: no I/O, so every writer can call it.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import quote, urlsplit, urlunsplit

from digestd.core.models import Paper

# The `user:password@` of a URL (scheme optional; up to the last "@" before the path).
_USERINFO = re.compile(r"^((?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//)[^/?#]*@")


def shown_url(url: str) -> str:
    """`url` as a message, a log line or a state file may show it: a `user:password@` in it
    (a mirror behind basic auth, a password pasted into the URL) becomes `***@`."""
    return _USERINFO.sub(r"\1***@", url, count=1)


ARXIV_HOSTS = frozenset({"arxiv.org", "export.arxiv.org", "www.arxiv.org"})
# Hosts whose URLs in an entry's comment become links: code, data, models, reviews, DOIs.
CODE_HOSTS = frozenset(
    {
        "github.com",
        "gitlab.com",
        "huggingface.co",
        "bitbucket.org",
        "sites.google.com",
        "zenodo.org",
        "openreview.net",
        "arxiv.org",
        "doi.org",
        "paperswithcode.com",
        "colab.research.google.com",
    }
)
CODE_HOST_SUFFIXES = (".github.io",)  # project pages: any <name>.github.io
MAX_URL_CHARS = 2000

# ASCII digits only ([0-9], not \d): ２５０６.１２３４５ is no arXiv id, and stored it would be
# another key for the same paper, mailed again when the real id comes.
NEW_ID = r"[0-9]{4}\.[0-9]{4,5}"  # 2506.05175, 0704.0001
OLD_ID = r"[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]{2})?/[0-9]{7}"  # astro-ph/0601001, math.AG/0601001
ARXIV_ID_RE = re.compile(rf"(?:{NEW_ID}|{OLD_ID})")
# Only these characters may appear in a link kept as arXiv gave it: nothing that needs
# escaping in HTML, Markdown or a mail client (no space, quotes, <>, `, (), [], |, \, non-ASCII).
_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%]+")
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_OWN_PATH = re.compile(rf"/(?P<kind>abs|pdf)/(?P<id>{NEW_ID}|{OLD_ID})(?:v[0-9]{{1,4}})?(?P<ext>\.pdf)?")


def is_arxiv_id(paper_id: str) -> bool:
    """True for a new-style (2506.05175) or old-style (astro-ph/0601001) arXiv id."""
    return ARXIV_ID_RE.fullmatch(paper_id) is not None


def arxiv_link(paper_id: str, version: int, kind: str = "abs") -> str:
    """The link built from the id alone: https://arxiv.org/<kind>/<id>v<version>."""
    return f"https://arxiv.org/{kind}/{quote(paper_id, safe='/.-')}v{max(1, int(version))}"


def _is_own_arxiv_url(url: str, paper_id: str, kind: str) -> bool:
    """A plain http(s) URL on arXiv naming this paper's `kind` page (any version)."""
    if len(url) > MAX_URL_CHARS or _PLAIN_URL.fullmatch(url) is None:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    m = _OWN_PATH.fullmatch(parts.path)
    return (
        parts.scheme in ("http", "https")
        and parts.netloc in ARXIV_HOSTS
        and m is not None
        and m["kind"] == kind
        and m["id"] == paper_id
        and (m["ext"] is None or kind == "pdf")
        and not parts.query
        and not parts.fragment
    )


def safe_arxiv_link(url: str | None, paper_id: str, version: int, kind: str = "abs") -> str:
    """`url` when it is a plain http(s) arXiv URL of this paper's `kind` page ("abs" or
    "pdf"), else the link built from the id: what arXiv sent is never written as it came."""
    if url is not None and _is_own_arxiv_url(url, paper_id, kind):
        return url
    return arxiv_link(paper_id, version, kind)


def _allowed_host(host: str) -> bool:
    if _HOST.fullmatch(host) is None:
        return False
    return host in CODE_HOSTS or any(
        host.endswith(s) and len(host) > len(s) and "." not in host[: -len(s)] for s in CODE_HOST_SUFFIXES
    )


def _encode(part: str, safe: str) -> str:
    """Percent-encode `part`, keeping escapes already there (a lone % becomes %25)."""
    return quote(_LONE_PERCENT.sub("%25", part), safe="%!$&*+,;=:@" + safe)


def code_link(url: str) -> str | None:
    """The link a URL in an entry's text may become: an http(s) URL on an allow-listed host
    (CODE_HOSTS, *.github.io), normalised and percent-encoded; None for anything else."""
    if len(url) > MAX_URL_CHARS or any(ord(c) <= 0x20 or c in "\x7f\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or port is not None or "@" in parts.netloc:
        return None
    if not _allowed_host(host):
        return None
    return urlunsplit(
        (
            scheme,
            host,
            _encode(parts.path or "/", "/"),
            _encode(parts.query, "/?"),
            _encode(parts.fragment, "/?"),
        )
    )


def safe_paper(paper: Paper) -> Paper:
    """`paper` with its link and PDF link checked (state written by an older digestd may
    hold links that were stored as arXiv sent them)."""
    link = safe_arxiv_link(paper.link, paper.id, paper.version)
    pdf = safe_arxiv_link(paper.pdf, paper.id, paper.version, "pdf") if paper.pdf else None
    if link == paper.link and pdf == paper.pdf:
        return paper
    return dataclasses.replace(paper, link=link, pdf=pdf)
