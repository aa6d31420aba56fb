"""Signed "more like this" links: `sign(key, "morelike", ID~PAPER)`, ID the reader's opaque
address id (digestd.core.tokens), PAPER the arXiv id packed as base64url. The link names no
address and cannot be altered to add another paper or act for another reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from digestd.core.interests import arxiv_id
from digestd.core.tokens import Keys, address_id, pack, sign, unpack, verify

PURPOSE = "morelike"


@dataclass(frozen=True, slots=True)
class MoreLike:
    """What a genuine link asks: add `paper` to the interests of the reader with id `reader`."""

    reader: str
    paper: str


def more_like_token(secret: bytes, email: str, paper: str) -> str:
    return sign(secret, PURPOSE, f"{address_id(secret, email)}~{pack(paper.encode('ascii'))}")


def more_like_link(public_url: str, secret: bytes, email: str, paper: str) -> str:
    """The link a digest shows beside a paper (served by `digestd serve`)."""
    return f"{public_url.rstrip('/')}/more/{more_like_token(secret, email, paper)}"


def more_like_links(public_url: str, secret: bytes, email: str) -> Callable[[str], str]:
    """`more_like_link` for one reader: the reader's id (an HMAC) is made once, not once per
    paper of the digest; each paper's link then costs one HMAC. Same links, byte for byte."""
    base, reader = f"{public_url.rstrip('/')}/more/", address_id(secret, email)

    def link(paper: str) -> str:
        return base + sign(secret, PURPOSE, f"{reader}~{pack(paper.encode('ascii'))}")

    return link


def read_more_like(keys: bytes | Keys, token: str) -> MoreLike | None:
    """What a genuine link asks, or None for a forged, altered or malformed one."""
    payload = verify(keys, PURPOSE, token)
    if payload is None or payload.count("~") != 1:
        return None
    reader, packed = payload.split("~")
    raw = unpack(packed)
    try:
        paper = arxiv_id(raw.decode("ascii")) if raw else None
    except UnicodeDecodeError:
        return None
    return MoreLike(reader, paper) if reader and paper else None
