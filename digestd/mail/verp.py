"""VERP envelope senders: `bounces+<token>@domain`, so a bounce names whom it is about.

The token is `ID.RUN.MAC` in lower-case base32: ID a keyed hash of the subscriber's address
(no address in it, as in unsubscribe links), RUN the run's number, MAC an HMAC of both with
the instance secret, so a forged bounce cannot suppress anyone. Base32, lower case, because
some relays fold the case of local parts. Signed with digestd/core/tokens.py's HMAC, under its
own prefixes and encoding, so a VERP token is never valid as a link token or the other way.
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

from digestd.core.tokens import hmac_digest, normal_address

_ID_BYTES = 10
_MAC_BYTES = 10
_TOKEN = re.compile(r"([a-z2-7]{16})\.([0-9]{1,12})\.([a-z2-7]{16})")


@dataclass(frozen=True, slots=True)
class VerpToken:
    """What a genuine token names: the subscriber's address id and the run."""

    address_id: str
    run: int


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def verp_id(secret: bytes, email: str) -> str:
    """The opaque id of `email` in a bounce address (any spelling of it gives the same id)."""
    return _b32(hmac_digest(secret, b"verp-id:" + normal_address(email), _ID_BYTES))


def _mac(secret: bytes, addr_id: str, run: int) -> str:
    return _b32(hmac_digest(secret, f"verp:{addr_id}.{run}".encode("ascii"), _MAC_BYTES))


def make_verp_token(secret: bytes, email: str, run: int) -> str:
    addr_id = verp_id(secret, email)
    return f"{addr_id}.{run}.{_mac(secret, addr_id, run)}"


def verp_sender(bounce_address: str, secret: bytes, email: str, run: int) -> str:
    """`local+token@domain` for `bounce_address` `local@domain`."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{make_verp_token(secret, email, run)}@{domain}"


def read_verp_token(secret: bytes, token: str) -> VerpToken | None:
    """What a genuine token names, or None for a forged, altered or malformed one."""
    m = _TOKEN.fullmatch(token.strip().lower())
    if m is None:
        return None
    addr_id, run, mac = m.group(1), int(m.group(2)), m.group(3)
    if not hmac.compare_digest(_mac(secret, addr_id, run), mac):
        return None
    return VerpToken(addr_id, run)


def find_verp_tokens(bounce_address: str, text: str) -> list[str]:
    """Every token in `text` addressed to `bounce_address`'s VERP form (the bounce's To:, the
    returned headers' Return-Path): candidates only, `read_verp_token` decides."""
    local, _, domain = bounce_address.lower().rpartition("@")
    pattern = re.escape(local) + r"\+([a-z2-7]{16}\.[0-9]{1,12}\.[a-z2-7]{16})@" + re.escape(domain)
    return list(dict.fromkeys(re.findall(pattern, text.lower())))
