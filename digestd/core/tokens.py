"""Unsubscribe tokens: an opaque id of the address plus an HMAC of that id.

A token is `ID.MAC`. ID is a keyed hash of the lower-cased address, so a proxy log or a
forwarded link shows no address, and the server finds the subscriber by computing the ids
of the current ones. MAC signs the id, so a link cannot be forged or altered. Links mailed
before this format (`base64(address).MAC`) keep working: `read_token` accepts both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from digestd.errors import ConfigError

_ID_BYTES = 12  # 96 bits: no two subscribers of one list share an id
_MAC_BYTES = 16
_LEGACY_MAC_BYTES = 18
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Token:
    """A genuine token: the address's id, and the address itself for a link in the old format."""

    id: str
    email: str | None = None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _hmac(secret: bytes, message: bytes, size: int) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()[:size]


def _normal(email: str) -> bytes:
    return email.strip().lower().encode("utf-8")


def address_id(secret: bytes, email: str) -> str:
    """The opaque id a token carries for `email` (any spelling of it gives the same id)."""
    return _b64(_hmac(secret, b"id:" + _normal(email), _ID_BYTES))


def _id_mac(secret: bytes, token_id: str) -> str:
    return _b64(_hmac(secret, b"unsubscribe:" + token_id.encode("ascii"), _MAC_BYTES))


def make_token(secret: bytes, email: str) -> str:
    """The token of an unsubscribe link for `email`: `ID.MAC`, no address in it."""
    token_id = address_id(secret, email)
    return f"{token_id}.{_id_mac(secret, token_id)}"


def _legacy_mac(secret: bytes, addr: bytes) -> str:
    return _b64(_hmac(secret, b"unsubscribe:" + addr, _LEGACY_MAC_BYTES))


def _read_legacy(secret: bytes, addr_part: str, mac: str) -> str | None:
    """The address of a genuine old-format token (`base64(address).MAC`), else None."""
    try:
        addr = base64.urlsafe_b64decode(addr_part + "=" * (-len(addr_part) % 4))
        email = addr.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if addr != _normal(email) or not hmac.compare_digest(_legacy_mac(secret, addr), mac):
        return None
    return email


def read_token(secret: bytes, token: str) -> Token | None:
    """What a genuine token names (its id; the address too for an old-format link), or None
    for a forged, altered or malformed one."""
    parts = token.split(".")
    if len(parts) != 2 or not all(_B64URL.fullmatch(p) for p in parts):
        return None
    first, mac = parts
    if hmac.compare_digest(_id_mac(secret, first), mac):
        return Token(id=first)
    email = _read_legacy(secret, first, mac)
    return Token(id=address_id(secret, email), email=email) if email is not None else None


def check_unsubscribe_config(public_url: str | None, secret: bytes | None) -> None:
    """settings.public_url promises one-click unsubscribe links, which need the signing key.
    Without it a run stops before mailing (exit 2) rather than quietly sending digests without
    the links: no paper is lost, the next run after the fix mails them."""
    if public_url and not secret:
        raise ConfigError(
            "settings.public_url is set, so digests carry one-click unsubscribe links, but no key "
            "signs them: set DIGESTD_SECRET_FILE (or DIGESTD_SECRET), the same one `digestd serve` "
            "uses, or remove public_url to use mailto: links only"
        )
