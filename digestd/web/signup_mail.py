"""The sign-up's one kind of mail (a confirmation link), sent off the request thread.

A request only queues the message, so the page answers in the same time whether a mail was
sent, held back by the rate limit, or not needed: nobody can time the answer to learn who is
subscribed. One worker thread sends through the instance's SMTP server (DIGESTD_SMTP_*), or
into the Maildir in state/ without one, as runs do. A failure is one log line, never a page.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
import queue
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

import aiosmtplib

from digestd.config.settings import SmtpSettings

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # messages waiting at most; beyond, new ones are dropped (and logged)


@dataclass(frozen=True, slots=True)
class Letter:
    """One message to send: already checked values (the address as the CLI checks it)."""

    to: str
    subject: str
    text: str


class Mailer:
    """A queue and one daemon thread that sends what is queued, in order."""

    def __init__(self, smtp: SmtpSettings | None, maildir: Path, sender: str) -> None:
        self.smtp = smtp
        self.maildir = maildir
        self.sender = sender
        self._queue: queue.Queue[Letter] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, letter: Letter) -> None:
        with self._lock:  # the thread starts with the first mail: most servers never send one
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="signup-mail", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(letter)
        except queue.Full:
            log.warning("sign-up: the mail queue is full; a confirmation mail was dropped")

    def _work(self) -> None:
        while True:
            letter = self._queue.get()
            try:
                self.send(self.build(letter))
            except (OSError, aiosmtplib.SMTPException, ValueError) as err:
                log.error("sign-up: a confirmation mail could not be sent: %s: %s", type(err).__name__, err)

    def build(self, letter: Letter) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = letter.to
        msg["Subject"] = letter.subject
        msg["Date"] = formatdate(localtime=False)
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"
        msg["Message-ID"] = make_msgid(domain=domain)
        msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: a reply to a request
        msg.set_content(letter.text)
        return msg

    def send(self, msg: EmailMessage) -> None:
        """aiosmtplib, as runs use: each reply must arrive whole within the timeout and is at
        most 32 KB. smtplib's timeout is per read, so a server trickling a reply, or sending a
        multi-line one without end, held this one worker (and every later mail) for ever and
        grew its memory without bound (4 GB in 30 s)."""
        s = self.smtp
        if s is None:
            mailbox.Maildir(str(self.maildir), create=True).add(msg)
            return
        ctx = ssl.create_default_context(cafile=s.ca_file) if s.security != "none" else None
        asyncio.run(aiosmtplib.send(
            msg, hostname=s.host, port=s.port, timeout=s.timeout,
            use_tls=s.security == "tls", start_tls=s.security == "starttls", tls_context=ctx,
            username=s.username if s.password else None, password=s.password,
        ))
