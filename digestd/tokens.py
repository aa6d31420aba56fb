"""Unsubscribe tokens: the address plus an HMAC of it, so a link cannot be forged or altered."""

from __future__ import annotations

import base64
import hashlib
import hmac

from digestd.errors import ConfigError


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_token(secret: bytes, email: str) -> str:
    addr = email.strip().lower().encode("utf-8")
    mac = hmac.new(secret, b"unsubscribe:" + addr, hashlib.sha256).digest()[:18]
    return f"{_b64(addr)}.{_b64(mac)}"


def read_token(secret: bytes, token: str) -> str | None:
    """The address a genuine token names, or None for a forged or altered one."""
    try:
        addr_part, _mac = token.split(".", 1)
        addr = base64.urlsafe_b64decode(addr_part + "=" * (-len(addr_part) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return addr if hmac.compare_digest(make_token(secret, addr), token) else None


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
