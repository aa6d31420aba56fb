"""Self-service end to end in headless Chromium (Debian's /usr/bin/chromium driven by
playwright; no browser is downloaded): the manage link of a real digest received by aiosmtpd,
and the pages at phone width with JavaScript off."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import NEEDS_CHROMIUM, Inbox, at, launched_chromium, run_once, smtp_env, wait_for
from fakearxiv import FakeArxiv
from fixtures import make_paper

from digestd.config.load import load_config
from digestd.core.models import Frequency
from digestd.web.unsubscribe import make_server

pytest.importorskip("playwright.sync_api")

pytestmark = NEEDS_CHROMIUM

A, B = "Video Anomaly Detection", "Graph Neural Networks"
SECRET = "browser-test-secret-0123456789"

YAML = """\
# the browser test's list
keywords:
  - {A}   # the first keyword
  - {B}
subscribers:
  # alice joined first
  - email: alice@example.org   # keep this comment
    keywords: [{A}]
settings:
  from: Daily Papers <papers@example.org>
  timezone: UTC
  public_url: {base}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from launched_chromium()


def run_in_thread(*args: Any, **kwargs: Any) -> Any:
    """One `digestd run` (its own asyncio loop) beside playwright's loop in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run_once, *args, **kwargs).result()


def phone(browser: Any) -> Any:
    """A 375 px wide page with JavaScript off: the pages must work without it."""
    return browser.new_page(viewport={"width": 375, "height": 800}, java_script_enabled=False)


def fits(browser: Any, url: str) -> dict[str, Any]:
    """Layout measured with JavaScript on, in a separate page (the served pages carry none)."""
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(url)
    result: dict[str, Any] = page.evaluate("""() => ({
        scroll: document.documentElement.scrollWidth,
        unlabelled: Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
            .filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML),
        emptyButtons: Array.from(document.querySelectorAll('button')).filter(b => !b.textContent.trim()).length,
    })""")
    page.close()
    return result


def test_manage_link_from_a_real_digest(tmp_path: Path, smtp: tuple[Any, Inbox], browser: Any) -> None:
    controller, inbox = smtp
    (tmp_path / "state").mkdir()
    (tmp_path / "subscribers.yaml").write_text(YAML.format(A=A, B=B, base="http://127.0.0.1:1/"))
    env = smtp_env(controller, DIGESTD_SECRET=SECRET)
    server = make_server(load_config(tmp_path, env), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "subscribers.yaml").write_text(YAML.format(A=A, B=B, base=base + "/"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        feeds = {A: [make_paper(100, A, "2026-11-19")], B: [make_paper(200, B, "2026-11-19")]}
        with FakeArxiv(feeds) as fake:
            run_in_thread(tmp_path, fake, env=env, now=at("2026-11-19"))  # the baseline
            fake.feeds[A] = [make_paper(101, A, "2026-11-20"), *fake.feeds[A]]
            run_in_thread(tmp_path, fake, env=env, now=at("2026-11-20"))
            (msg,) = inbox.to("alice@example.org")
            html = msg.get_body(("html",)).get_content()
            m = re.search(r'<a href="([^"]+)"[^>]*>Manage your subscription</a>', html)
            assert m, html[-1500:]
            url = m.group(1)
            assert url.startswith(f"{base}/manage/") and "alice" not in url
            assert f"[manage]: {url}" in msg.get_body(("plain",)).get_content()

            page = phone(browser)
            page.goto(url)
            assert "alice@example.org" in page.inner_text("body")
            page.get_by_label(B).check()
            page.get_by_label(A).uncheck()
            page.get_by_label("Weekly").check()
            page.get_by_role("button", name="Save changes").click()
            page.wait_for_load_state()
            said = page.get_by_role("status").inner_text()
            assert f"follows {B}" in said and "weekly digest" in said
            page.close()

            text = (tmp_path / "subscribers.yaml").read_text()
            assert "  # alice joined first\n  - email: alice@example.org   # keep this comment\n" in text
            assert f"  - {A}   # the first keyword\n" in text
            (alice,) = load_config(tmp_path, {}).subscribers
            assert alice.keywords == (B,) and alice.frequency is Frequency.WEEKLY

            # The next runs: nothing on Saturday (weekly now), then Monday's digest of B only.
            a_new, b_new = make_paper(102, A, "2026-11-21"), make_paper(201, B, "2026-11-21")
            fake.feeds[A] = [a_new, *fake.feeds[A]]
            fake.feeds[B] = [b_new, *fake.feeds[B]]
            run_in_thread(tmp_path, fake, env=env, now=at("2026-11-21"))
            assert len(inbox.to("alice@example.org")) == 1
            run_in_thread(tmp_path, fake, env=env, now=at("2026-11-23"))
            later = inbox.to("alice@example.org")
            assert len(later) == 2
            body = later[1].get_body(("plain",)).get_content()
            assert re.findall(r"^\[(\d{4}\.\d{5})\]: ", body, re.M) == [b_new.id]
        layout = fits(browser, url)
        assert layout["scroll"] <= 375 and layout["unlabelled"] == [] and layout["emptyButtons"] == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_sign_up_in_the_browser(tmp_path: Path, smtp: tuple[Any, Inbox], browser: Any) -> None:
    controller, inbox = smtp
    (tmp_path / "state").mkdir()
    env = smtp_env(controller, DIGESTD_SECRET=SECRET)
    (tmp_path / "subscribers.yaml").write_text(YAML.format(A=A, B=B, base="http://127.0.0.1:1/"))
    server = make_server(load_config(tmp_path, env), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "subscribers.yaml").write_text(YAML.format(A=A, B=B, base=base + "/") + "  open_signup: true\n")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        feeds = {A: [make_paper(100, A, "2026-11-19")], B: [make_paper(200, B, "2026-11-19")]}
        with FakeArxiv(feeds) as fake:
            run_in_thread(tmp_path, fake, env=env, now=at("2026-11-19"))  # the baseline

            page = phone(browser)
            page.goto(f"{base}/subscribe")
            page.get_by_label("Your e-mail address").fill("carol@example.org")
            page.get_by_label(B).check()
            page.get_by_role("button", name="Send me a confirmation link").click()
            page.wait_for_load_state()
            assert "on its way" in page.get_by_role("status").inner_text()
            wait_for(lambda: len(inbox.to("carol@example.org")) == 1)
            (mail,) = inbox.to("carol@example.org")
            m = re.search(r"(http://127\.0\.0\.1:\d+/confirm/\S+)", mail.get_body(("plain",)).get_content())
            assert m
            confirm = m.group(1)
            page.goto(confirm)
            assert load_config(tmp_path, {}).subscribers[-1].email == "alice@example.org"  # GET: nothing
            page.get_by_role("button", name="Confirm my subscription").click()
            page.wait_for_load_state()
            assert "is subscribed" in page.get_by_role("status").inner_text()
            page.close()
            carol = load_config(tmp_path, {}).subscribers[-1]
            assert carol.email == "carol@example.org" and carol.keywords == (B,)

            b_new = make_paper(201, B, "2026-11-20")
            fake.feeds[B] = [b_new, *fake.feeds[B]]
            run_in_thread(tmp_path, fake, env=env, now=at("2026-11-20"))
            digests = [msg for msg in inbox.to("carol@example.org") if "confirm" not in str(msg["Subject"])]
            assert len(digests) == 1  # from the current papers on: the baseline's are not mailed
            body = digests[0].get_body(("plain",)).get_content()
            assert re.findall(r"^\[(\d{4}\.\d{5})\]: ", body, re.M) == [b_new.id]
        for url in (f"{base}/subscribe", confirm):
            layout = fits(browser, url)
            assert layout["scroll"] <= 375 and layout["unlabelled"] == [] and layout["emptyButtons"] == 0, url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
