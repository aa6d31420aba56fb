"""Signed tokens: unsubscribe and manage links, form (CSRF) and confirmation tokens.

Every token is checked against the current key and the previous ones still listed
(`Keys`, from DIGESTD_SECRET and DIGESTD_SECRET_PREVIOUS): links mailed before a key change
keep working until the old key is removed. `sign`/`verify` (and their expiring forms) are the
one way to make a new kind of token; a VERP bounce address uses them with its own purpose:
`sign(keys.current, "verp", address_id(keys.current, email))` in the local part, and
`verify(keys, "verp", local_part)` when the bounce arrives.

Unsubscribe tokens: an opaque id of the address plus an HMAC of that id.

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
from collections.abc import Sequence
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


def hmac_digest(secret: bytes, message: bytes, size: int) -> bytes:
    """The first `size` bytes of HMAC-SHA256: every signed value of digestd (links, forms, VERP)."""
    return hmac.new(secret, message, hashlib.sha256).digest()[:size]


def normal_address(email: str) -> bytes:
    """An address as ids are made of it: any spelling of one address gives the same bytes."""
    return email.strip().lower().encode("utf-8")




def address_id(secret: bytes, email: str) -> str:
    """The opaque id a token carries for `email` (any spelling of it gives the same id)."""
    return _b64(hmac_digest(secret, b"id:" + normal_address(email), _ID_BYTES))


def _id_mac(secret: bytes, token_id: str) -> str:
    return _b64(hmac_digest(secret, b"unsubscribe:" + token_id.encode("ascii"), _MAC_BYTES))


def make_token(secret: bytes, email: str) -> str:
    """The token of an unsubscribe link for `email`: `ID.MAC`, no address in it."""
    token_id = address_id(secret, email)
    return f"{token_id}.{_id_mac(secret, token_id)}"


def _legacy_mac(secret: bytes, addr: bytes) -> str:
    return _b64(hmac_digest(secret, b"unsubscribe:" + addr, _LEGACY_MAC_BYTES))


def _read_legacy(secret: bytes, addr_part: str, mac: str) -> str | None:
    """The address of a genuine old-format token (`base64(address).MAC`), else None."""
    try:
        addr = base64.urlsafe_b64decode(addr_part + "=" * (-len(addr_part) % 4))
        email = addr.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if addr != normal_address(email) or not hmac.compare_digest(_legacy_mac(secret, addr), mac):
        return None
    return email


def read_token(secret: bytes | Keys, token: str) -> Token | None:
    """What a genuine token names (its id; the address too for an old-format link), or None
    for a forged, altered or malformed one. Any key of `secret` (a Keys) may have signed it."""
    parts = token.split(".")
    if len(parts) != 2 or not all(_B64URL.fullmatch(p) for p in parts):
        return None
    first, mac = parts
    for key in _all_keys(secret):
        if hmac.compare_digest(_id_mac(key, first), mac):
            return Token(id=first)
        email = _read_legacy(key, first, mac)
        if email is not None:
            return Token(id=address_id(key, email), email=email)
    return None


@dataclass(frozen=True, slots=True)
class Keys:
    """The key new tokens are signed with, then the previous keys still accepted (rotation)."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    @property
    def all(self) -> tuple[bytes, ...]:
        return (self.current, *(k for k in self.previous if k != self.current))


def _all_keys(secret: bytes | Keys) -> tuple[bytes, ...]:
    return secret.all if isinstance(secret, Keys) else (secret,)


_PAYLOAD = re.compile(r"[A-Za-z0-9_~-]{1,2048}")
MAX_TOKEN = 4096  # characters: anything longer is refused before any HMAC is computed


def pack(data: bytes) -> str:
    """Bytes as a payload `sign` accepts (base64url, no padding)."""
    return _b64(data)


def unpack(payload: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (ValueError, binascii.Error):
        return None


def _purpose_mac(secret: bytes, purpose: str, payload: str) -> str:
    return _b64(hmac_digest(secret, f"{purpose}:{payload}".encode("ascii"), _MAC_BYTES))


def sign(secret: bytes, purpose: str, payload: str) -> str:
    """`PAYLOAD.MAC`: `payload` (base64url characters and `~`) signed for one purpose, so a
    token made for one use (a form) is refused for another (a manage link)."""
    if not _PAYLOAD.fullmatch(payload):
        raise ValueError("a token payload is base64url text (and ~)")
    return f"{payload}.{_purpose_mac(secret, purpose, payload)}"


def verify(keys: bytes | Keys | Sequence[bytes], purpose: str, token: str) -> str | None:
    """The payload of a genuine token for `purpose` under any of `keys`, or None."""
    if len(token) > MAX_TOKEN:
        return None
    payload, dot, mac = token.rpartition(".")
    if not dot or not _PAYLOAD.fullmatch(payload) or not _B64URL.fullmatch(mac):
        return None
    candidates = keys if isinstance(keys, Sequence) and not isinstance(keys, bytes) else _all_keys(keys)
    for key in candidates:
        if hmac.compare_digest(_purpose_mac(key, purpose, payload), mac):
            return payload
    return None


def sign_until(secret: bytes, purpose: str, payload: str, expires: int) -> str:
    """A token that `verify_until` refuses after `expires` (Unix seconds)."""
    return sign(secret, purpose, f"{payload}~{expires:x}")


def verify_until(keys: bytes | Keys | Sequence[bytes], purpose: str, token: str, now: float) -> str | None:
    """The payload of a genuine token that has not expired at `now`, else None."""
    signed = verify(keys, purpose, token)
    if signed is None:
        return None
    payload, _, expires = signed.rpartition("~")
    try:
        ok = bool(payload or expires) and int(expires, 16) >= now
    except ValueError:
        return None
    return payload if ok else None


def make_manage_token(secret: bytes, email: str) -> str:
    """The token of a manage link: the address's opaque id, signed for "manage"."""
    return sign(secret, "manage", address_id(secret, email))


def manage_link(public_url: str, secret: bytes, email: str) -> str:
    """The "Manage your subscription" link a digest carries (served by `digestd serve`)."""
    return f"{public_url.rstrip('/')}/manage/{make_manage_token(secret, email)}"


def read_manage_token(keys: bytes | Keys, token: str) -> str | None:
    """The address id a genuine manage token carries, or None."""
    token_id = verify(keys, "manage", token)
    return token_id if token_id is not None and _B64URL.fullmatch(token_id) else None


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
