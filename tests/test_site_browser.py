"""The archive site in headless Chromium (Debian's /usr/bin/chromium driven by playwright; no
browser is downloaded), served by `digestd serve` so its Content-Security-Policy applies.

At 375 px and 1024 px: nothing wider than the viewport, links followed from the index to a
day page and its feed, the filter box typed into (it narrows the list per key), keyboard
focus visible; with JavaScript off the filter is simply absent and every paper is shown.
Screenshots go to tmp, or with DIGESTD_UPDATE_SCREENSHOTS=1 to docs/screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import NEEDS_CHROMIUM, launched_chromium, serve_digestd
from site_seed import DAY1, DAY2, KW_A, SECRET_ENV, SLUG_A, seed

pytest.importorskip("playwright.sync_api")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

pytestmark = NEEDS_CHROMIUM

MEASURE = """() => {
  const vw = document.documentElement.clientWidth, wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 0.5 || r.left < -0.5)) wide.push(el.tagName + '.' + el.className);
  }
  return {vw, scroll: document.documentElement.scrollWidth, wide: wide.slice(0, 10),
          shown: Array.from(document.querySelectorAll('.item')).filter(e => e.offsetParent !== null).length,
          items: document.querySelectorAll('.item').length,
          filter: document.querySelectorAll('#filter').length};
}"""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = seed(tmp_path_factory.mktemp("browser") / "inst")
    yield from serve_digestd(home, SECRET_ENV, idle_timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium()


def _shots(tmp_path: Path) -> Path:
    if os.environ.get("DIGESTD_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path


def _fits(page: Any, width: int) -> dict[str, Any]:
    m: dict[str, Any] = page.evaluate(MEASURE)
    assert m["vw"] == width
    assert m["scroll"] <= width and m["wide"] == [], f"sideways scroll at {width}px: {m}"
    return m


@pytest.mark.parametrize("width", [375, 1024])
def test_index_day_page_and_filter(base: str, browser: Any, width: int, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"{msg.text} {msg.location}") if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(base + "/")
    index = _fits(page, width)
    assert index["items"] == 2 and index["filter"] == 1  # two days; the script ran under the CSP
    page.locator("#filter").press_sequentially("unbroken")  # a day-1 title only
    assert page.evaluate(MEASURE)["shown"] == 1
    page.locator("#filter").fill("")
    page.locator("#filter").dispatch_event("input")
    assert page.evaluate(MEASURE)["shown"] == 2
    shots = _shots(tmp_path)
    if width == 375:
        page.screenshot(path=str(shots / "site-index-375.png"), full_page=True)

    page.click(f'a[href="days/{DAY1}.html"]')  # follow the link from the index
    page.wait_for_url(f"**/days/{DAY1}.html")
    day = _fits(page, width)
    assert day["items"] == 4 and day["shown"] == 4
    box = page.locator("#filter")
    box.press_sequentially("2611.0001")  # ids: narrows as each key goes in
    assert page.evaluate(MEASURE)["shown"] == 3
    box.press_sequentially("1")
    assert page.evaluate(MEASURE)["shown"] == 1
    assert page.locator(f"section#{SLUG_A}").is_visible()
    box.press("Control+a")
    box.press_sequentially("Author13 With-A-Rather")  # authors: the 14-author paper only
    assert page.evaluate(MEASURE)["shown"] == 1
    box.press("Control+a")
    box.press_sequentially("no such paper")
    assert page.evaluate(MEASURE)["shown"] == 0 and not page.locator(f"section#{SLUG_A}").is_visible()
    box.fill("")
    box.dispatch_event("input")
    page.screenshot(path=str(shots / f"site-day-{width}.png"), full_page=width == 375)

    page.keyboard.press("Tab")  # keyboard focus is visible
    page.keyboard.press("Tab")
    outline = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        return {tag: document.activeElement.tagName, style: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }""")
    assert outline["tag"] in ("A", "INPUT") and outline["style"] != "none" and outline["width"] >= 2, outline

    href = page.locator(f'h2.kw a[href="../feeds/{SLUG_A}.atom"]').evaluate("a => a.href")  # the feed link works
    assert href == f"{base}/feeds/{SLUG_A}.atom"
    feed = page.request.get(href)
    assert feed.status == 200 and feed.headers["content-type"].startswith("application/atom+xml")
    assert all(u.startswith(base) for u in requests), [u for u in requests if not u.startswith(base)]
    assert errors == []
    page.close()


def test_pages_work_with_javascript_off(base: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 900}, java_script_enabled=False)
    page.goto(base + "/")
    m = _fits(page, 375)
    assert m["filter"] == 0 and m["shown"] == 2  # no filter box, every day listed
    page.click(f'a[href="days/{DAY2}.html"]')
    page.wait_for_url(f"**/days/{DAY2}.html")
    m = _fits(page, 375)
    assert m["filter"] == 0 and m["shown"] == m["items"] == 1
    assert KW_A in page.locator("h2.kw").first.inner_text()
    page.click(f'a[href="{DAY1}.html"]')  # the day-to-day links
    page.wait_for_url(f"**/days/{DAY1}.html")
    page.close()
