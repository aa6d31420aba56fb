"""Shared test harness: a fake arXiv server, a real SMTP server (aiosmtpd), and instances.

Every server binds 127.0.0.1 on a free port and is stopped by its fixture.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from fakearxiv import FakeArxiv

from digestd.config.load import load_config
from digestd.core.models import RunReport
from digestd.mail.maildir import MaildirTransport
from digestd.mail.transport import make_transport
from digestd.pipeline import RunOptions, run
from digestd.source.arxiv import ArxivSource

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Inbox:
    """What the SMTP server accepted, parsed; `behaviour` lets a test script refusals."""

    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply
    accept_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, addr: str) -> list[EmailMessage]:
        return [m for m in self.messages if addr.lower() in str(m["To"]).lower()]


class InboxHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.inbox.refuse_rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.inbox.accept_delay:
            import asyncio

            await asyncio.sleep(self.inbox.accept_delay)
        data = envelope.original_content or b""
        msg = email.message_from_bytes(data, policy=policy.default)
        with self.inbox.lock:
            self.inbox.raw.append(data)
            self.inbox.messages.append(msg)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(InboxHandler(inbox), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture
def arxiv() -> Iterator[FakeArxiv]:
    with FakeArxiv() as fake:
        yield fake


def write_instance(
    home: Path, keywords: list[Any], subscribers: list[dict[str, Any]], **settings: Any
) -> Path:
    """A minimal instance: subscribers.yaml only; templates fall back to the packaged defaults."""
    import json

    home.mkdir(parents=True, exist_ok=True)
    (home / "state").mkdir(exist_ok=True)
    settings.setdefault("from", "Daily Papers <papers@example.org>")
    doc = {"keywords": keywords, "subscribers": subscribers, "settings": settings}
    (home / "subscribers.yaml").write_text(json.dumps(doc, indent=2), encoding="utf-8")  # JSON is YAML
    return home


def smtp_env(controller: Controller, **extra: str) -> dict[str, str]:
    return {
        "DIGESTD_SMTP_HOST": "127.0.0.1",
        "DIGESTD_SMTP_PORT": str(controller.port),
        "DIGESTD_SMTP_SECURITY": "none",
        "DIGESTD_SMTP_BACKOFF": "0.05",
        "DIGESTD_SMTP_TIMEOUT": "5",
        **extra,
    }


def run_once(
    home: Path,
    fake: FakeArxiv,
    *,
    env: dict[str, str] | None = None,
    now: datetime | None = None,
    options: RunOptions | None = None,
    timeout: float = 5.0,
) -> RunReport:
    """One in-process `digestd run` against the fake arXiv and, with `env`, a real SMTP server."""
    env = {"DIGESTD_ARXIV_DELAY": "0", **(env or {})}
    cfg = load_config(home, env)
    source = ArxivSource(fake.url, delay=0.0, timeout=timeout, retries=1)
    transport = make_transport(
        cfg.smtp,
        cfg.paths.maildir,
        connections=cfg.settings.connections,
        max_rate=cfg.settings.max_rate,
    )
    if cfg.smtp is None:
        assert isinstance(transport, MaildirTransport)
    return run(cfg, source=source, transport=transport, options=options or RunOptions(), now=now or datetime.now(UTC))


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real `digestd` command in a subprocess (exit codes and stderr as a user sees them)."""
    full_env = {**os.environ, "DIGESTD_ARXIV_DELAY": "0", **(env or {})}
    full_env.pop("DIGESTD_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "digestd", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    """Until `predicate()` holds (the event); `timeout` only ends a wait that would never end,
    so it is far above anything a test waits for (a local server or process: 2 s at most)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def serve_digestd(home: Path, env: dict[str, str], *, idle_timeout: float | None = None) -> Iterator[str]:
    """`digestd serve`'s server (every route and the site) on a free port, in a thread; yields
    its base URL once (iterate: `for base in serve_digestd(...)`), stopped afterwards."""
    from digestd.web.static import make_server

    cfg = load_config(home, env)
    server = make_server(cfg, "127.0.0.1", 0) if idle_timeout is None else \
        make_server(cfg, "127.0.0.1", 0, idle_timeout=idle_timeout)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# Browser tests drive Debian's chromium (.ci/run installs it) through playwright; playwright
# never downloads a browser of its own.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"),
]


def launched_chromium() -> Iterator[Any]:
    """A headless chromium through playwright, closed afterwards (for a fixture to yield from)."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()
