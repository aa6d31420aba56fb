"""Issue 9 ("Trust"), points 4 and 5: arXiv answers are bounded, and nothing from arXiv is
trusted as markup or as a link.

Real sockets throughout: the local arXiv stand-in (tests/fakearxiv.py) trickles, bombs, pads
and injects raw entries; runs deliver to a real SMTP server; the README is a real file.
"""

from __future__ import annotations

import email
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from email import policy
from html.parser import HTMLParser
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from conftest import at, run_once, write_instance
from fakearxiv import FakeArxiv, Fault
from faultkit import KW_A, KW_B, additions, day_feeds, keyword_rows, two_keyword_home
from fixtures import make_paper, make_papers
from smtpfaults import FaultServer, Received, make_certs

from digestd.config.load import load_config
from digestd.config.settings import DEFAULT_ARXIV_MAX_BYTES
from digestd.core.links import CODE_HOSTS, code_link, is_arxiv_id, safe_arxiv_link, safe_paper
from digestd.core.models import Keyword, Paper
from digestd.errors import ConfigError, ExitCode, FetchError
from digestd.render.digest import DigestRenderer, Entry
from digestd.render.paper_text import linkify, text_references
from digestd.render.readme import row
from digestd.source.arxiv import ArxivSource
from digestd.source.http import ResponseRefused

TIMEOUT = 2.0  # DIGESTD_ARXIV_TIMEOUT for the trickle tests
MIB = 1 << 20


# --------------------------------------------------------------------------- helpers


class Anchors(HTMLParser):
    """The href of every <a> in a page, as a browser's parser reads it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.append(str(dict(attrs).get("href")))


def parts(msg: Received) -> tuple[str, str]:
    """(text, html) of a delivered digest."""
    parsed = email.message_from_bytes(msg.data, policy=policy.default)
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[attr-defined]
    return text, html


def raw_entry(
    entry_id: str | None,
    title: str | None,
    *,
    updated: str = "2026-11-25T12:00:00Z",
    links: Sequence[tuple[str, str]] = (),
    comment: str | None = None,
    summary: str = "A summary.",
) -> str:
    """An Atom <entry> as arXiv's current format writes it, with any id, title and links.
    `links` are (rel or "pdf", href) pairs."""
    out = ["<entry>"]
    if entry_id is not None:
        out.append(f"<id>{escape(entry_id)}</id>")
    if title is not None:
        out.append(f"<title>{escape(title)}</title>")
    out.append(f"<updated>{updated}</updated><published>{updated}</published>")
    for rel, href in links:
        if rel == "pdf":
            out.append(f'<link href={quoteattr(href)} rel="related" type="application/pdf" title="pdf"/>')
        else:
            out.append(f'<link href={quoteattr(href)} rel={quoteattr(rel)} type="text/html"/>')
    out.append(f"<summary>{escape(summary)}</summary>")
    if comment is not None:
        out.append(f"<arxiv:comment>{escape(comment)}</arxiv:comment>")
    out.append('<arxiv:primary_category term="cs.CV"/><author><name>A. Author</name></author></entry>')
    return "".join(out)


def arxiv_env(fake: FakeArxiv, **extra: str) -> dict[str, str]:
    full = {
        **os.environ,
        "DIGESTD_ARXIV_API_URL": fake.url,
        "DIGESTD_ARXIV_DELAY": "0",
        "DIGESTD_ARXIV_TIMEOUT": "5",
        **extra,
    }
    full.pop("DIGESTD_HOME", None)
    return full


# The real CLI, reporting its own peak memory (ru_maxrss, KiB on Linux) on its last line.
MEASURED_CLI = (
    "import resource, runpy, sys\n"
    "try:\n"
    "    runpy.run_module('digestd', run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    print(f'peak-rss-kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n"
)


def measured_run(home: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """`digestd --home HOME run` in a fresh process; (the process, its peak RSS in bytes)."""
    p = subprocess.run(
        [sys.executable, "-c", MEASURED_CLI, "--home", str(home), "run"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    m = re.search(r"^peak-rss-kib (\d+)$", p.stderr, re.M)
    assert m, p.stderr
    return p, int(m[1]) * 1024


# --------------------------------------------------------------------------- point 4: time


@pytest.mark.parametrize("headers", [False, True], ids=["body", "status-line-and-headers"])
def test_a_trickling_answer_is_cut_at_the_deadline(headers: bool) -> None:
    """One byte every 0.5 s would take hours; the timeout is a deadline for the whole answer."""
    with FakeArxiv({KW_A: make_papers(KW_A, 20)}) as fake:
        fake.faults[KW_A] = [Fault.trickle(0.5, headers=headers)]
        src = ArxivSource(fake.url, delay=0, timeout=TIMEOUT, retries=0)
        t0 = time.monotonic()
        with pytest.raises(FetchError) as err:
            src.fetch(Keyword(KW_A), 20)
        elapsed = time.monotonic() - t0
        assert elapsed < TIMEOUT + 1, elapsed  # what the issue demands
        what = "answer" if headers else "finish answering"
        assert f"arXiv did not {what} within 2 s" in str(err.value)
        assert len(fake.requests_for(KW_A)) == 1
        assert len(src.fetch(Keyword(KW_A), 20)) == 20  # the same source works on afterwards


def test_a_trickle_over_https_is_cut_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline cuts a TLS socket as well (the connection class for https is watched)."""
    certs = make_certs(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca))
    with FakeArxiv({KW_A: make_papers(KW_A, 20)}, tls=certs.server_context()) as fake:
        assert fake.url.startswith("https://")
        src = ArxivSource(fake.url, delay=0, timeout=TIMEOUT, retries=0)
        assert len(src.fetch(Keyword(KW_A), 20)) == 20  # verified TLS works at all
        fake.faults[KW_A] = [Fault.trickle(0.5)]
        t0 = time.monotonic()
        with pytest.raises(FetchError, match="did not finish answering within 2 s"):
            src.fetch(Keyword(KW_A), 20)
        assert time.monotonic() - t0 < TIMEOUT + 1


def test_a_trickling_keyword_fails_alone_within_its_timeout_plus_a_second(tmp_path: Path) -> None:
    """In a run: the trickling keyword is asked once and fails within timeout + 1 s (an answer
    that crawls is not asked for again in the run; the next run tries again), and the other
    keyword is fetched, stored and mailed as usual."""
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        run_once(home, fake, env=srv.env())
        rows_a = keyword_rows(home, KW_A)
        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = [Fault.trickle(0.5)] * 4
        report = run_once(home, fake, env=srv.env(), timeout=TIMEOUT)
        (first,) = fake.requests_for(KW_A)[-1:]
        (b,) = fake.requests_for(KW_B)[-1:]
        asked_a = len(fake.requests_for(KW_A))
    ka, kb = report.keywords
    assert ka.error and "did not finish answering within 2 s" in ka.error, ka
    assert asked_a == 2  # the baseline, then one attempt today
    assert b.at - first.at < TIMEOUT + 1  # the keyword failed within its timeout plus a second
    assert kb.error is None and set(kb.new) == additions(2, KW_B)
    assert keyword_rows(home, KW_A) == rows_a
    assert [m.paper_ids() for m in srv.to("carol@example.org")] == [additions(2, KW_B)]
    assert srv.to("alice@example.org") == []


# --------------------------------------------------------------------------- point 4: size


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_are_decoded(encoding: str) -> None:
    with FakeArxiv({KW_A: make_papers(KW_A, 30)}) as fake:
        fake.faults[KW_A] = [Fault.compressed(encoding)]
        src = ArxivSource(fake.url, delay=0, timeout=5, retries=0)
        got = src.fetch(Keyword(KW_A), 30)
    assert [p.id for p in got] == [p.id for p in make_papers(KW_A, 30)]


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault.compressed("identity", label="br"), "Content-Encoding 'br', which digestd does not decode"),
        (Fault.compressed("identity", label="gzip"), "gzip response cannot be decompressed"),
    ],
    ids=["unasked-encoding", "corrupt-gzip"],
)
def test_an_undecodable_answer_fails_with_a_sentence(fault: Fault, says: str) -> None:
    with FakeArxiv({KW_A: make_papers(KW_A, 5)}) as fake:
        fake.faults[KW_A] = [fault]
        src = ArxivSource(fake.url, delay=0, timeout=5, retries=0)
        with pytest.raises(FetchError, match=re.escape(says)):
            src.fetch(Keyword(KW_A), 5)
        assert len(src.fetch(Keyword(KW_A), 5)) == 5  # the next answer is read as usual


def test_a_mirror_behind_basic_auth_keeps_it_across_its_own_redirect_only() -> None:
    """digestd follows redirects itself: the `user:password@` of DIGESTD_ARXIV_API_URL goes on
    to an absolute Location on the same host (as requests did), never to another host."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from digestd.source.http import BoundedHttp

    feed = b'<feed xmlns="http://www.w3.org/2005/Atom"></feed>'
    good = "Basic " + base64.b64encode(b"lab:s3cret").decode()
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None: ...

        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            host = "localhost" if self.path.startswith("/away") else "127.0.0.1"
            if self.path.startswith(("/api", "/away")):
                self.send_response(302)
                self.send_header("Location", f"http://{host}:{self.server.server_port}/moved")
                body = b""
            elif self.headers.get("Authorization") == good:
                self.send_response(200)
                body = feed
            else:
                self.send_response(401)
                body = b""
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://lab:s3cret@127.0.0.1:{server.server_port}"
        answer = BoundedHttp().get(f"{base}/api/query", {}, timeout=10, max_bytes=MIB)
        assert (answer.status, answer.body) == (200, feed)
        seen.clear()
        BoundedHttp().get(f"{base}/away", {}, timeout=10, max_bytes=MIB)  # to localhost: another host
        assert [auth for path, auth in seen if path == "/moved"] == [None]
    finally:
        server.shutdown()


def test_a_redirect_carrying_a_gzip_bomb_is_followed_without_reading_its_body() -> None:
    """requests read a 3xx's body whole and inflated it before following (even with
    allow_redirects=False): 300 KB on the wire became 300 MB in memory, past the cap."""
    import contextlib
    import threading
    import tracemalloc
    import zlib
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from digestd.source.http import BoundedHttp

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(packer.compress(b"\0" * MIB) for _ in range(300)) + packer.flush()
    feed = b'<feed xmlns="http://www.w3.org/2005/Atom"></feed>'

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None: ...

        def do_GET(self) -> None:
            redirect = self.path.startswith("/api")
            body = bomb if redirect else feed
            self.send_response(302 if redirect else 200)
            if redirect:
                self.send_header("Location", "/moved")
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client closes the redirect unread
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tracemalloc.start()
    try:
        answer = BoundedHttp().get(f"http://127.0.0.1:{server.server_port}/api/query", {},
                                   timeout=10, max_bytes=MIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        server.shutdown()
    assert (answer.status, answer.body) == (200, feed)
    assert peak < 20 * MIB, peak


def test_a_gzip_bomb_fails_only_its_keyword_and_memory_stays_bounded(tmp_path: Path) -> None:
    """~1 MB on the wire inflating to 1.1 GB: inflated against the 50 MB cap, refused, not
    retried; the digestd process's peak memory grows by far less than the bomb."""
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        env = arxiv_env(fake, **srv.env())
        p, baseline = measured_run(home, env)
        assert p.returncode == 0, p.stderr
        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = [Fault.gzip_bomb(1100 * MIB)] * 4
        n_before = len(fake.requests_for(KW_A))
        p, peak = measured_run(home, env)
        out = p.stdout + p.stderr
        assert p.returncode == ExitCode.TEMPFAIL, out
        assert "larger than DIGESTD_ARXIV_MAX_BYTES (50,000,000 bytes) once decompressed" in out
        assert f"{KW_B}: fetched 13, 3 new" in out and "Traceback" not in out and "MemoryError" not in out
        assert len(fake.requests_for(KW_A)) - n_before == 1  # refused, not asked again
        assert [m.paper_ids() for m in srv.to("carol@example.org")] == [additions(2, KW_B)]
    assert peak - baseline < 200 * MIB, (peak - baseline) / MIB


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "until-close"])
def test_a_body_over_the_cap_fails(length: bool) -> None:
    with FakeArxiv({KW_A: make_papers(KW_A, 20)}) as fake:
        src = ArxivSource(fake.url, delay=0, timeout=5, retries=3, max_bytes=100_000)
        assert len(src.fetch(Keyword(KW_A), 20)) == 20  # 20 papers fit in 100 kB
        fake.faults[KW_A] = [Fault.padded(150_000, length=length)]
        with pytest.raises(ResponseRefused, match=r"larger than DIGESTD_ARXIV_MAX_BYTES \(100,000 bytes\);"):
            src.fetch(Keyword(KW_A), 20)
        assert len(fake.requests_for(KW_A)) == 2  # not retried: the same answer would come


def test_the_cap_comes_from_the_environment_and_fails_only_its_keyword(tmp_path: Path) -> None:
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        env = arxiv_env(fake, **srv.env(), DIGESTD_ARXIV_MAX_BYTES="200000")
        p, _ = measured_run(home, env)
        assert p.returncode == 0, p.stderr
        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = [Fault.padded(250_000, length=False)]
        p, _ = measured_run(home, env)
    out = p.stdout + p.stderr
    assert p.returncode == ExitCode.TEMPFAIL, out
    assert "larger than DIGESTD_ARXIV_MAX_BYTES (200,000 bytes); raise that setting" in out
    assert f"{KW_B}: fetched 13, 3 new" in out


def test_max_bytes_setting_is_validated(tmp_path: Path) -> None:
    home = two_keyword_home(tmp_path)
    assert load_config(home, {}).arxiv_max_bytes == DEFAULT_ARXIV_MAX_BYTES == 50_000_000
    assert load_config(home, {"DIGESTD_ARXIV_MAX_BYTES": " 1000 "}).arxiv_max_bytes == 1000
    for bad in ("0", "-5", "abc", "1e6", "50MB", "1.5", "\uff15"):
        with pytest.raises(ConfigError) as err:
            load_config(home, {"DIGESTD_ARXIV_MAX_BYTES": bad})
        assert (
            str(err.value) == f"DIGESTD_ARXIV_MAX_BYTES must be a positive whole number of bytes, not {bad!r}"
        )


# --------------------------------------------------------------------------- point 4: entries


def test_more_entries_than_asked_keeps_the_first_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="digestd.source.feed")
    own = make_papers(KW_A, 150)
    with FakeArxiv({KW_A: own}) as fake:
        fake.faults[KW_A] = [Fault.too_many(40_000)]
        got = ArxivSource(fake.url, delay=0, timeout=30, retries=0).fetch(Keyword(KW_A), 100)
    assert [p.id for p in got] == [p.id for p in own[:100]]
    warnings = [r.getMessage() for r in caplog.records if r.name == "digestd.source.feed"]
    assert warnings == [f"{KW_A}: arXiv sent 40000 entries where 100 were asked for; kept the first 100"]


def test_entries_without_id_or_title_or_with_a_foreign_id_are_skipped_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="digestd.source.feed")
    bad = [
        raw_entry(None, "Nameless But Titled"),
        raw_entry("http://arxiv.org/abs/2611.07001v1", None),
        raw_entry("http://arxiv.org/abs/2611.07002v1", "   "),
        raw_entry("https://evil.example/abs/2611.07003v1", "Foreign Host"),
        raw_entry("http://arxiv.org/abs/not-an-id/123", "Odd Id"),
        raw_entry("http://arxiv.org/abs/2611.070", "Too Short"),
    ]
    good_old_style = raw_entry("http://arxiv.org/abs/hep-th/9901001v2", "Old Style Is Fine")
    own = make_papers(KW_A, 5)
    with FakeArxiv({KW_A: own}) as fake:
        fake.faults[KW_A] = [Fault.raw(*bad, good_old_style)]
        got = ArxivSource(fake.url, delay=0, timeout=5, retries=0).fetch(Keyword(KW_A), 20)
    assert [p.id for p in got] == ["hep-th/9901001"] + [p.id for p in own]
    assert got[0].version == 2 and got[0].link == "http://arxiv.org/abs/hep-th/9901001v2"  # its own <id>
    log = "\n".join(r.getMessage() for r in caplog.records if r.name == "digestd.source.feed")
    assert f"{KW_A}: skipped entry 1 (title 'Nameless But Titled'): it has no <id>" in log
    assert f"{KW_A}: skipped entry 2 (2611.07001v1): it has no title" in log
    assert f"{KW_A}: skipped entry 3 (2611.07002v1): it has no title" in log
    assert (
        f"{KW_A}: skipped entry 4: its id 'https://evil.example/abs/2611.07003v1' is not an arXiv id" in log
    )
    assert f"{KW_A}: skipped entry 5: its id 'http://arxiv.org/abs/not-an-id/123' is not an arXiv id" in log
    assert f"{KW_A}: skipped entry 6: its id 'http://arxiv.org/abs/2611.070' is not an arXiv id" in log
    assert len(log.splitlines()) == 6


def test_ids_and_versions_in_other_scripts_digits_are_no_arxiv_ids() -> None:
    """\\d took fullwidth and Arabic-Indic digits: ２６１１.０７０２４ was stored as a paper (a
    second key for 2611.07024, mailed again when the real id comes) with a broken link."""
    own = make_papers(KW_A, 2)
    odd = [raw_entry("http://arxiv.org/abs/２６１１.０７０２４v1", "Fullwidth"),
           raw_entry("http://arxiv.org/abs/2611.07025v٣", "Arabic-Indic version")]
    with FakeArxiv({KW_A: own}) as fake:
        fake.faults[KW_A] = [Fault.raw(*odd)]
        got = ArxivSource(fake.url, delay=0, timeout=5, retries=0).fetch(Keyword(KW_A), 20)
    assert [p.id for p in got] == [p.id for p in own]
    assert not is_arxiv_id("２６１１.０７０２４") and not is_arxiv_id("hep-th/９９０１００１")
    assert safe_arxiv_link("https://arxiv.org/abs/2611.07025v٣", "2611.07025", 3) == "https://arxiv.org/abs/2611.07025v3"


def test_bidi_overrides_and_c1_controls_are_dropped_at_the_fetch_edge() -> None:
    """U+202E (right-to-left override), U+2067 and U+009B (a terminal's CSI) reached the
    README, the text part and the site as they came, reordering or steering what follows."""
    own = make_papers(KW_A, 1)
    odd = raw_entry("http://arxiv.org/abs/2611.07026v1", "Safe \u202etxt.exe\u202c title\x9b31m",
                    summary="An \u2067abstract\u2069\x7f.", comment="c\x85d\x90")
    with FakeArxiv({KW_A: own}) as fake:
        fake.faults[KW_A] = [Fault.raw(odd.replace("cs.CV", "cs.CV\u202e"))]
        got = ArxivSource(fake.url, delay=0, timeout=5, retries=0).fetch(Keyword(KW_A), 20)
    paper = got[0]
    assert (paper.title, paper.summary, paper.comment) == ("Safe txt.exe title31m", "An abstract.", "c d")
    assert paper.primary_category == "cs.CV"
    assert "\u202e" not in row(paper)


def test_a_version_zero_entry_is_skipped_so_the_store_can_read_back_what_it_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="digestd.source.feed")
    own = make_papers(KW_A, 3)
    with FakeArxiv({KW_A: own}) as fake:
        fake.faults[KW_A] = [Fault.raw(raw_entry("http://arxiv.org/abs/2611.07020v0", "Version Zero"))]
        got = ArxivSource(fake.url, delay=0, timeout=5, retries=0).fetch(Keyword(KW_A), 20)
    assert [p.id for p in got] == [p.id for p in own]
    assert "skipped entry 1 (2611.07020v0): arXiv versions start at v1" in caplog.text


@pytest.mark.parametrize("updated", ["9999-12-31T23:00:00-14:00", "0001-01-01T00:00:00+01:00", "1066-10-14T09:00:00Z"])
def test_an_out_of_range_date_fails_only_its_keyword(tmp_path: Path, updated: str) -> None:
    """An <updated> that overflows on the way to UTC (or predates arXiv) fails that keyword
    with one sentence; the other keyword is stored and the run ends normally."""
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake:
        fake.faults[KW_A] = [Fault.raw(raw_entry("http://arxiv.org/abs/2611.07021v1", "When", updated=updated))] * 4
        report = run_once(home, fake)
    ka, kb = report.keywords
    assert ka.error and "has <updated>" in ka.error, ka
    assert kb.error is None and kb.baseline


def test_an_entry_from_the_future_is_skipped_and_cannot_wedge_its_keyword(tmp_path: Path) -> None:
    """An entry dated years ahead was stored and stayed the keyword's newest paper: every real
    new paper then looked stale ("the response looks wrong"), failing the keyword every run."""
    home = two_keyword_home(tmp_path)
    future = raw_entry("http://arxiv.org/abs/2611.07022v1", "From 2099", updated="2099-01-01T00:00:00Z")
    with FakeArxiv(day_feeds(1)) as fake:
        run_once(home, fake, now=at("2026-11-11"))
        fake.feeds = day_feeds(2)
        fake.faults[KW_A] = [Fault.raw(future)]
        second = run_once(home, fake, now=at("2026-11-12"))
        fake.feeds = day_feeds(3)
        third = run_once(home, fake, now=at("2026-11-13"))
    assert second.keywords[0].error is None and set(second.keywords[0].new) == additions(2, KW_A)
    assert third.keywords[0].error is None, third.keywords[0].error
    assert set(third.keywords[0].new) == additions(3, KW_A)
    assert "2611.07022" not in {r["paper"]["id"] for r in keyword_rows(home, KW_A).values()}


def test_huge_fields_are_cut_so_a_digest_part_stays_under_100_kb(tmp_path: Path) -> None:
    """One entry with a 2 MB title, abstract and comment and 20,000 authors and categories
    (6.5 MB, under the byte cap) made a 4.5 MB digest, a 5 MB README and 7.8 MB day page."""
    home = two_keyword_home(tmp_path, [{"email": "alice@example.org", "keywords": [KW_A]}])
    huge = raw_entry("http://arxiv.org/abs/2611.07023v1", "title " * 300_000,
                     summary="abstract " * 300_000, comment="comment " * 300_000, updated="2026-11-13T00:00:00Z")
    many = "".join(f"<author><name>Author {i}</name></author>" for i in range(20_000))
    many += "".join(f'<category term="cs.X{i}"/>' for i in range(20_000))
    huge = huge.replace("</entry>", many + "</entry>")
    with FakeArxiv(day_feeds(1)) as fake:
        run_once(home, fake, now=at("2026-11-11"))
        fake.feeds = day_feeds(2)
        fake.faults[KW_A] = [Fault.raw(huge)]
        report = run_once(home, fake, now=at("2026-11-12"))
    assert "2611.07023" in report.keywords[0].new
    (mail,) = (home / "state" / "maildir" / "new").iterdir()
    msg = email.message_from_bytes(mail.read_bytes(), policy=policy.default)
    for part in msg.walk():
        if not part.is_multipart():
            assert len(part.get_content().encode()) < 100_000, part.get_content_type()
    assert (home / "README.md").stat().st_size < 100_000


# --------------------------------------------------------------------------- point 5: links

EVIL_LINKS = {  # entry -> its <link>s; each href must reach no output at all
    "2611.07010": [("alternate", "javascript:alert('link')"), ("pdf", "data:text/html;base64,PHNjcmlwdD4=")],
    "2611.07011": [
        ("alternate", "https://arxiv.org/abs/2611.07011v1)<script>alert('x')</script>"),
        ("pdf", 'https://arxiv.org/pdf/2611.07011v1" onmouseover="alert(1)'),
    ],
    "2611.07012": [
        ("alternate", "http://evil.example/abs/2611.07012v1"),
        ("pdf", "https://evil.example/p.pdf"),
    ],
    "2611.07013": [
        ("alternate", "https://arxiv.org/abs/2611.99999v1"),
        ("pdf", "https://arxiv.org/pdf/2611.07013v1"),
    ],
}
COMMENT = (
    "Code: https://github.com/x/y and javascript:alert('comment') and https://evil.example/steal "
    "and [click](https://evil.example/md) and https://huggingface.co/org/model(v2)/tree"
)


def evil_day2() -> list[str]:
    entries = [
        raw_entry(f"http://arxiv.org/abs/{pid}v1", f"Video Anomaly Detection Trap {pid}",
                  updated=f"2026-11-25T12:00:{59 - k:02d}Z", links=links)
        for k, (pid, links) in enumerate(sorted(EVIL_LINKS.items(), reverse=True))
    ]  # fmt: skip
    entries.insert(0, raw_entry("http://arxiv.org/abs/2611.07014v1", "Video Anomaly Detection With Code",
                                updated="2026-11-25T12:01:00Z", comment=COMMENT,
                                links=[("alternate", "https://arxiv.org/abs/2611.07014v1")]))  # fmt: skip
    return entries


def test_links_from_arxiv_never_reach_the_digest_the_text_part_or_the_readme(tmp_path: Path) -> None:
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        run_once(home, fake, env=srv.env())
        fake.faults[KW_A] = [Fault.raw(*evil_day2())]
        report = run_once(home, fake, env=srv.env())
        (alice,) = srv.to("alice@example.org")
    assert report.keywords[0].error is None, report.keywords
    new_ids = {"2611.07010", "2611.07011", "2611.07012", "2611.07013", "2611.07014"}
    assert alice.paper_ids() == new_ids
    text, html = parts(alice)
    readme = (home / "README.md").read_text(encoding="utf-8")
    stored = keyword_rows(home, KW_A)
    bad_hrefs = [href for links in EVIL_LINKS.values() for _, href in links]
    bad_hrefs.remove("https://arxiv.org/pdf/2611.07013v1")  # that one is the paper's own PDF: kept
    for out in (html, text, readme, str(stored)):
        for href in bad_hrefs:
            assert href not in out and escape(href) not in out, href
        assert "evil.example/abs" not in out and "evil.example/p.pdf" not in out and "2611.99999" not in out
    # every <a> of the HTML part: built from an id, the allow-listed comment link, or unsubscribe
    hrefs = Anchors(html).hrefs
    own = {f"https://arxiv.org/{kind}/{pid}v1" for pid in new_ids for kind in ("abs", "pdf", "html")}
    allowed = own | {"https://github.com/x/y", "https://huggingface.co/org/model%28v2%29/tree"}
    assert {h for h in hrefs if not h.startswith("mailto:")} <= allowed  # mailto: is the unsubscribe link
    assert "https://github.com/x/y" in hrefs and "https://huggingface.co/org/model%28v2%29/tree" in hrefs
    assert not [h for h in hrefs if "evil" in h or h.startswith(("javascript:", "data:"))]
    # the comment's other URLs are shown as text, never as links
    assert "https://evil.example/steal" in html and "javascript:alert(" in html
    # the text part: every link (reference definition) is built, allow-listed, or unsubscribe
    defined = re.findall(r"^\[[^\]]+\]: (\S+)$", text, re.M)
    assert [u for u in defined if "evil" in u or not u.startswith(("https://arxiv.org/", "mailto:"))] == []
    for pid in new_ids:
        assert f"[{pid}]: https://arxiv.org/abs/{pid}v1" in text
    # the README: each row links to the paper's built link; no Markdown link from the comment
    for pid in new_ids:
        assert f"](https://arxiv.org/abs/{pid}v1)** |" in readme
    assert "](https://evil.example/md)" not in readme and "]\\(https://evil.example/md)" in readme
    assert {r["paper"]["link"] for r in stored.values() if r["paper"]["id"] in new_ids} == {
        f"https://arxiv.org/abs/{pid}v1" for pid in new_ids
    }


def test_writers_check_links_of_papers_stored_before_the_checks() -> None:
    """A Paper loaded from old state may hold anything: the digest and README still write only
    links built from its id."""
    stale = Paper(
        id="2611.00042", version=3, title="Old State Paper", link='javascript:alert("x")',
        pdf="https://evil.example/x.pdf", updated="2026-11-20T00:00:00Z", published="2026-11-20T00:00:00Z",
        authors=("A",), summary="S", comment=None, categories=("cs.CV",), primary_category="cs.CV",
    )  # fmt: skip
    renderer = DigestRenderer(None, date="2026-11-21", list_name="L", sender="P <p@example.org>")
    text, html = renderer.render("a@example.org", [("Kw", [Entry(stale)])])
    hrefs = Anchors(html).hrefs
    assert "https://arxiv.org/abs/2611.00042v3" in hrefs and "https://arxiv.org/pdf/2611.00042v3" in hrefs
    assert not [h for h in hrefs if "javascript" in h or "evil" in h]
    assert "javascript" not in text and "evil" not in text and "javascript" not in html
    assert "](https://arxiv.org/abs/2611.00042v3)**" in row(stale) and "javascript" not in row(stale)
    garbage_id = safe_paper(Paper(**{**stale.to_dict(), "id": 'x"><b>', "authors": (), "categories": ()}))
    assert garbage_id.link == "https://arxiv.org/abs/x%22%3E%3Cb%3Ev3"


def test_comment_urls_become_links_only_on_allow_listed_hosts() -> None:
    html = str(linkify("code https://github.com/x/y, page https://lab.github.io/p and https://evil.example/"))
    assert Anchors(html).hrefs == ["https://github.com/x/y", "https://lab.github.io/p"]
    assert "https://evil.example/" in html  # as text
    assert Anchors(str(linkify("javascript:alert(1) data:text/html,x"))).hrefs == []
    long_evil = "https://evil.example/" + "a" * 100
    long_ok = "https://github.com/" + "a" * 100
    refs: list[tuple[str, str]] = []
    out = text_references(f"see {long_evil} and {long_ok}", "p", refs)
    assert out == f"see {long_evil} and [p-1]" and refs == [("p-1", long_ok)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/x/y", "https://github.com/x/y"),
        ("HTTPS://GitHub.com/x/y", "https://github.com/x/y"),
        ("http://user.github.io/p?q=1#top", "http://user.github.io/p?q=1#top"),
        ("https://huggingface.co/a/b(c)'d", "https://huggingface.co/a/b%28c%29%27d"),
        ("https://github.com/a%20b/100%", "https://github.com/a%20b/100%25"),
        ("https://github.com/é", "https://github.com/%C3%A9"),
        ("https://doi.org/10.1000/xyz", "https://doi.org/10.1000/xyz"),
        ("https://github.com", "https://github.com/"),
        ("https://evil.example/x", None),
        ("https://github.com.evil.example/x", None),
        ("https://github.com@evil.example/x", None),
        ("https://github.com:8443/x", None),
        ("https://evil.example\\.github.io/", None),
        ("https://a.b.github.io/", None),
        ("https://github.io/", None),
        ("https://xn--ghub-9qa.com/", None),
        ("https://gíthub.com/", None),
        ("javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("ftp://github.com/x", None),
        ("https://github.com/x\ny", None),
        ("https://github.com/" + "a" * 2000, None),
    ],
)
def test_code_link(url: str, expected: str | None) -> None:
    assert code_link(url) == expected


def test_code_hosts_are_the_issue_list() -> None:
    assert {"github.com", "gitlab.com", "huggingface.co", "bitbucket.org", "sites.google.com", "zenodo.org",
            "openreview.net", "arxiv.org", "doi.org", "paperswithcode.com", "colab.research.google.com"} == CODE_HOSTS  # fmt: skip


@pytest.mark.parametrize(
    ("url", "kind", "expected"),
    [
        ("http://arxiv.org/abs/2506.05175v1", "abs", "http://arxiv.org/abs/2506.05175v1"),  # the seeds' own
        ("https://arxiv.org/abs/2506.05175v2", "abs", "https://arxiv.org/abs/2506.05175v2"),
        ("https://export.arxiv.org/abs/2506.05175", "abs", "https://export.arxiv.org/abs/2506.05175"),
        ("https://arxiv.org/pdf/2506.05175v1", "pdf", "https://arxiv.org/pdf/2506.05175v1"),
        ("https://arxiv.org/pdf/2506.05175v1.pdf", "pdf", "https://arxiv.org/pdf/2506.05175v1.pdf"),
        ("https://arxiv.org/abs/2506.05175v1?x=1", "abs", "https://arxiv.org/abs/2506.05175v1"),
        ("https://arxiv.org/abs/2506.05175v1)", "abs", "https://arxiv.org/abs/2506.05175v1"),
        ("https://arxiv.org/abs/2506.05176v1", "abs", "https://arxiv.org/abs/2506.05175v1"),
        ("https://arxiv.org.evil.example/abs/2506.05175v1", "abs", "https://arxiv.org/abs/2506.05175v1"),
        ("https://x@arxiv.org/abs/2506.05175v1", "abs", "https://arxiv.org/abs/2506.05175v1"),
        ("https://arxiv.org:444/abs/2506.05175v1", "abs", "https://arxiv.org/abs/2506.05175v1"),
        ("ftp://arxiv.org/abs/2506.05175v1", "abs", "https://arxiv.org/abs/2506.05175v1"),
        ("javascript:alert(1)", "pdf", "https://arxiv.org/pdf/2506.05175v1"),
        (None, "abs", "https://arxiv.org/abs/2506.05175v1"),
    ],
)
def test_safe_arxiv_link(url: str | None, kind: str, expected: str) -> None:
    assert safe_arxiv_link(url, "2506.05175", 1, kind) == expected


def test_arxiv_ids() -> None:
    for good in ("2506.05175", "0704.0001", "astro-ph/0601001", "math.AG/0601001", "hep-th/9901001"):
        assert is_arxiv_id(good), good
    for bad in ("2506.051", "2506.051755", "abc", "astro-ph/060100", "../etc/passwd", "2506.05175v1", ""):
        assert not is_arxiv_id(bad), bad


def test_readme_cells_cannot_become_markdown_links(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW_A], [], timezone="UTC")
    trap = make_paper(1, KW_A, "2026-11-20", summary="see [here](javascript:alert(1)) and ![x](https://evil.example/t.png)",
                      comment="[code](https://evil.example/c) <b>x</b>")  # fmt: skip
    with FakeArxiv({KW_A: [trap]}) as fake:
        run_once(home, fake, now=at("2026-11-20"))
    readme = (home / "README.md").read_text(encoding="utf-8")
    assert "](" not in readme.replace(f"](https://arxiv.org/abs/{trap.id}v1)", "")
    assert "[here]\\(javascript:alert(1))" in readme and "&lt;b>x&lt;/b>" in readme
