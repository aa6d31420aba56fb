"""`digestd serve` serves site/ at `/`: types, ETag and Last-Modified with 304, no listing,
nothing outside site/, and the unsubscribe route still answers beside it. A real server on
127.0.0.1, raw HTTP requests (http.client sends a path as given, `..` included)."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from site_seed import DAY1, SECRET_ENV, SLUG_A, seed

from digestd.config.load import load_config
from digestd.web import static
from digestd.web.app import AppServer
from digestd.web.static import make_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    home = seed(tmp_path_factory.mktemp("web") / "inst")
    server: AppServer = make_server(load_config(home, SECRET_ENV), "127.0.0.1", 0, idle_timeout=5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield home, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def get(port: int, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_files_with_their_types(served: tuple[Path, int]) -> None:
    home, port = served
    for path, file, ctype in (
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        (f"/days/{DAY1}.html", f"days/{DAY1}.html", "text/html; charset=utf-8"),
        (f"/feeds/{SLUG_A}.atom?x=1", f"feeds/{SLUG_A}.atom", "application/atom+xml; charset=utf-8"),
    ):
        status, headers, body = get(port, path)
        assert status == 200, path
        assert body == (home / "site" / file).read_bytes()
        assert headers["content-type"] == ctype and headers["content-length"] == str(len(body))
        assert headers["etag"].startswith('"') and headers["last-modified"].endswith(" GMT")
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = get(port, "/", "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_a_large_file_is_sent_whole_in_pieces_never_held_at_once(
        served: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A feed of many megabytes costs each client CHUNK bytes, not the file's size."""
    home, port = served
    big = home / "site" / "big.atom"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    reads: list[int] = []
    real_send = static.StaticFile.send

    def counting_send(self: static.StaticFile, out: object) -> None:
        real_read = self.file.read

        def read(n: int = -1) -> bytes:
            reads.append(n)
            return real_read(n)

        object.__setattr__(self, "file", type("R", (), {"read": staticmethod(read)})())
        real_send(self, out)  # type: ignore[arg-type]

    monkeypatch.setattr(static.StaticFile, "send", counting_send)
    try:
        status, headers, body = get(port, "/big.atom")
        assert status == 200 and body == big.read_bytes()
        assert headers["content-length"] == str(big.stat().st_size)
        assert len(reads) > 40 and all(0 < n <= static.CHUNK for n in reads)
        assert get(port, "/big.atom", If_None_Match=headers["etag"])[0] == 304
    finally:
        big.unlink()


def test_304_on_etag_or_date_and_200_once_the_file_changes(served: tuple[Path, int]) -> None:
    home, port = served
    _, first, _ = get(port, f"/feeds/{SLUG_A}.atom")
    status, headers, body = get(port, f"/feeds/{SLUG_A}.atom", If_None_Match=first["etag"])
    assert status == 304 and body == b"" and headers["etag"] == first["etag"]
    status, _, body = get(port, f"/feeds/{SLUG_A}.atom", If_Modified_Since=first["last-modified"])
    assert status == 304 and body == b""
    assert get(port, f"/feeds/{SLUG_A}.atom", If_None_Match='"other"')[0] == 200
    assert get(port, f"/feeds/{SLUG_A}.atom", If_Modified_Since="Mon, 01 Jan 2001 00:00:00 GMT")[0] == 200
    page = home / "site" / "days" / f"{DAY1}.html"
    _, before, _ = get(port, f"/days/{DAY1}.html")
    original = page.read_bytes()
    try:
        page.write_bytes(original + b"<!-- rebuilt -->\n")
        status, after, body = get(port, f"/days/{DAY1}.html", If_None_Match=before["etag"])
        assert status == 200 and after["etag"] != before["etag"] and body.endswith(b"<!-- rebuilt -->\n")
    finally:
        page.write_bytes(original)


def test_404_no_listing_and_nothing_outside_site(served: tuple[Path, int]) -> None:
    home, port = served
    (home / "site" / "days" / ".index.html.0123abcd.tmp").write_text("half written")
    os.symlink(home / "subscribers.yaml", home / "site" / "days" / "link.html")
    for path in (
        "/days/1999-01-01.html", "/days/", "/days", "/feeds/", "/nothing",
        "/../subscribers.yaml", "/days/../../subscribers.yaml", "/%2e%2e/subscribers.yaml",
        "/days/%2E%2E/%2e%2e/state/papers.json", "/..%2fsubscribers.yaml", "/days/..%5c..%5csubscribers.yaml",
        "/days/.index.html.0123abcd.tmp", "/days/link.html", "/%00", "/%ff",
    ):
        status, _, body = get(port, path)
        assert status == 404, path
        assert b"alice@example.org" not in body and b"keywords" not in body and DAY1.encode() not in body, path
    assert get(port, "/index.html", "POST")[0] == 404  # the site takes GET and HEAD only


def test_routes_still_answer_beside_the_site(served: tuple[Path, int]) -> None:
    _, port = served
    status, _, body = get(port, "/unsubscribe/AAAA.BBBB")
    assert status == 403 and b"not valid" in body  # the unsubscribe route, not a file
