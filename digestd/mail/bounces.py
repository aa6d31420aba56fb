"""Reading bounces: classify one message, and take new ones from a Maildir or an IMAP folder.

Which recipients failed, in the many non-standard formats, is flufl.bounce's job (the
detectors Mailman uses); RFC 3464 status codes and diagnostics and RFC 5965 feedback fields
are read with the stdlib parser from their structured parts. Whom a bounce is about comes
only from our signed VERP token, never from the text a stranger could write."""

from __future__ import annotations

import contextlib
import email
import email.message
import imaplib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flufl.bounce import all_failures

from digestd.config.bounce_env import ImapSource
from digestd.core.bounce_policy import BounceKind
from digestd.errors import DigestdError
from digestd.mail.verp import find_verp_tokens
from digestd.store.readfile import read_regular

log = logging.getLogger(__name__)

MAX_BYTES = 5_000_000  # a bounce carries at most the digest back; bigger is not one of ours
MAX_MESSAGES = 2000  # per check; the rest wait for the next
_DIAG_CHARS = 300


class BounceSourceError(DigestdError):
    """The bounce mailbox cannot be reached or read: the check stops, nothing is marked."""


@dataclass(frozen=True, slots=True)
class Bounce:
    """A classified message: what kind, the status code and diagnostic, our tokens in it."""

    kind: BounceKind
    status: str
    diagnostic: str
    tokens: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Fetched:
    """One new message: `raw` is None when it could not be read (`problem` says why)."""

    ref: str
    raw: bytes | None
    problem: str = ""


def _clean(text: object) -> str:
    """One line, printable, bounded: a diagnostic comes from a stranger's server."""
    s = " ".join(str(text).split())
    return "".join(c for c in s if c.isprintable())[:_DIAG_CHARS]


def _feedback(msg: email.message.Message) -> str | None:
    """The Feedback-Type of an RFC 5965 report, or None if this is not one."""
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            inner = part.get_payload()
            fields = inner[0] if isinstance(inner, list) and inner else part
            if not isinstance(fields, email.message.Message):
                return "abuse"
            return _clean(fields.get("Feedback-Type", "abuse")) or "abuse"
    return None


def _dsn_fields(msg: email.message.Message) -> list[email.message.Message]:
    """The per-recipient blocks of an RFC 3464 message/delivery-status part."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list):
                return [b for b in blocks[1:] if isinstance(b, email.message.Message)]
    return []


def _from_dsn(blocks: list[email.message.Message]) -> tuple[BounceKind, str, str] | None:
    """Kind, status and diagnostic of the first failed recipient (a delay is not a failure:
    the final report follows)."""
    for b in blocks:
        action = str(b.get("Action", "")).strip().lower()
        status = _clean(b.get("Status", ""))
        if action != "failed" and not (action == "" and status[:1] in "45" and status):
            continue
        diag = _clean(b.get("Diagnostic-Code", "")).removeprefix("smtp;").strip()
        if diag.lower().startswith("smtp; "):
            diag = diag[6:]
        kind = BounceKind.TRANSIENT if status.startswith("4") else BounceKind.PERMANENT
        return kind, status, diag or f"status {status}"
    return None


def classify(raw: bytes, bounce_address: str) -> Bounce | None:
    """What this message is (None: not a bounce nor a complaint, e.g. an auto-reply, or a
    message with no token of ours, which could name nobody: it is not parsed, since flufl's
    detectors take seconds on a stranger's 5 MB of short lines)."""
    tokens = tuple(find_verp_tokens(bounce_address, raw.decode("latin-1")))
    if not tokens:
        return None
    msg = email.message_from_bytes(raw)
    feedback = _feedback(msg)
    if feedback is not None:
        return Bounce(BounceKind.COMPLAINT, "", f"feedback report: {feedback}", tokens)
    blocks = _dsn_fields(msg)
    if blocks:  # a standard report is authoritative: no failed recipient (a delay) is no bounce
        dsn = _from_dsn(blocks)
        return Bounce(dsn[0], dsn[1], dsn[2], tokens) if dsn else None
    try:
        temporary, permanent = all_failures(msg)
    except Exception as err:  # a detector choking on a stranger's message: not a bounce we can read
        log.info("bounce detectors failed on a message: %s", type(err).__name__)
        return None
    if not (temporary or permanent):
        return None
    subject = _clean(msg.get("Subject", "")) or "no subject"
    kind = BounceKind.PERMANENT if permanent else BounceKind.TRANSIENT
    return Bounce(kind, "", f"non-standard bounce: {subject}", tokens)


# --- Maildir ---------------------------------------------------------------------------------


def _seen(name: str) -> bool:
    return ":2," in name and "S" in name.rpartition(":2,")[2]


def maildir_new(root: Path) -> Iterator[Fetched]:
    """Messages in new/, and in cur/ without the S flag; `ref` is the file's path."""
    if not (root / "new").is_dir() or not (root / "cur").is_dir():
        raise BounceSourceError(f"DIGESTD_BOUNCE_MAILDIR {root} is not a Maildir (no new/ and cur/)")
    unseen = sorted(p for p in (root / "cur").iterdir() if not _seen(p.name))
    paths = sorted((root / "new").iterdir()) + unseen
    for path in paths[:MAX_MESSAGES]:
        if path.name.startswith("."):
            continue
        try:
            yield _read_message(path)
        except OSError as err:
            yield Fetched(str(path), None, err.strerror or str(err))


def _read_message(path: Path) -> Fetched:
    """One Maildir file, read only if it is a regular file within MAX_BYTES (a FIFO would
    block the check for ever, a link to /dev/zero would read without end)."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        return Fetched(str(path), None, f"{size} bytes, over the {MAX_BYTES} limit")
    raw = read_regular(path, MAX_BYTES)
    if len(raw) > MAX_BYTES:
        return Fetched(str(path), None, f"over the {MAX_BYTES} limit")
    return Fetched(str(path), raw)


def maildir_mark(ref: str) -> None:
    """Into cur/ with the S flag (the Maildir convention for "read")."""
    path = Path(ref)
    base, _, flags = path.name.partition(":2,")
    flags = "".join(sorted(set(flags) | {"S"}))
    try:
        path.replace(path.parent.parent / "cur" / f"{base}:2,{flags}")
    except OSError as err:
        raise BounceSourceError(f"cannot mark {path} as read: {err.strerror or err}") from None


# --- IMAP ------------------------------------------------------------------------------------


class ImapBox:
    """One IMAP session over verified TLS: new (unseen) messages, marked \\Seen when done."""

    def __init__(self, src: ImapSource) -> None:
        self.src = src
        ctx = ssl.create_default_context()
        if src.ca_file:
            ctx.load_verify_locations(cafile=src.ca_file)
        where = f"the IMAP server {src.host}:{src.port}"
        try:
            self.imap = imaplib.IMAP4_SSL(src.host, src.port, ssl_context=ctx, timeout=src.timeout)
        except ssl.SSLError as err:
            raise BounceSourceError(f"TLS with {where} failed ({err.reason}); "
                                    "set DIGESTD_BOUNCE_IMAP_CA_FILE if it uses a private CA") from None
        except OSError as err:
            raise BounceSourceError(f"cannot reach {where}: {err.strerror or err}") from None
        try:
            self.imap.login(src.user, src.password)
            typ, _ = self.imap.select(f'"{src.folder}"')
        except imaplib.IMAP4.error:
            self.close()
            raise BounceSourceError(f"{where} refused the login of {src.user}: "
                                    "check DIGESTD_BOUNCE_IMAP_PASSWORD_FILE") from None
        if typ != "OK":
            self.close()
            raise BounceSourceError(f"{where} has no folder {src.folder!r}")

    def close(self) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.imap.logout()

    def new(self) -> Iterator[Fetched]:
        try:
            typ, data = self.imap.uid("SEARCH", "UNSEEN")
            uids = data[0].split() if typ == "OK" and data and data[0] else []
            for uid in uids[:MAX_MESSAGES]:
                yield self._one(uid.decode("ascii"))
        except (imaplib.IMAP4.error, OSError) as err:
            raise BounceSourceError(f"reading the IMAP folder failed: {err}") from None

    def _one(self, uid: str) -> Fetched:
        typ, data = self.imap.uid("FETCH", uid, "(RFC822.SIZE)")
        text = data[0].decode("ascii", "replace") if typ == "OK" and isinstance(data[0], bytes) else ""
        size = int(text.split("RFC822.SIZE")[1].strip(" )").split()[0]) if "RFC822.SIZE" in text else -1
        if not 0 <= size <= MAX_BYTES:
            return Fetched(uid, None, f"size {size if size >= 0 else 'unknown'}, over the {MAX_BYTES} limit")
        typ, data = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
        raw = next((d[1] for d in data if isinstance(d, tuple) and len(d) > 1), None) if typ == "OK" else None
        if not isinstance(raw, bytes):
            return Fetched(uid, None, "the server returned no message")
        return Fetched(uid, raw)

    def mark(self, uid: str) -> None:
        try:
            typ, _ = self.imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
        except (imaplib.IMAP4.error, OSError) as err:
            raise BounceSourceError(f"cannot mark IMAP message {uid} as seen: {err}") from None
        if typ != "OK":
            raise BounceSourceError(f"cannot mark IMAP message {uid} as seen")
