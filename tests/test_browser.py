"""The digest in a real browser: headless Chromium at phone and desktop widths.

A real-sized digest (3 keywords x 10 papers, long titles, 41-author lists, long URLs, unbroken
90-character words, markup in titles) is laid out at 375 px and 1024 px. Measured in the
browser: nothing is wider than the viewport, every link is absolute, nothing loads. The
digest itself carries no script: the measuring script lives in a wrapper page that holds the
digest in same-origin `srcdoc` iframes of each width, and writes its findings into the DOM,
which `--dump-dom` prints.

Screenshots at both widths go to tmp, or with DIGESTD_UPDATE_SCREENSHOTS=1 to
docs/screenshots/ (the ones the README shows).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from digest_samples import sample_digest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
WIDTHS = (375, 1024)
SHOT_HEIGHT = {375: 1500, 1024: 1300}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="needs headless Chromium: `apt-get install chromium` (Debian; .ci/run installs it)",
    ),
]

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio", "--no-default-browser-check",
    "--proxy-server=http://127.0.0.1:9",  # belt and braces: any request at all would fail
]

MEASURE = """
<script>
function measure(frame) {
  const doc = frame.contentDocument, root = doc.documentElement, vw = root.clientWidth;
  const wide = [];
  for (const el of doc.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 0.5 || r.left < -0.5)) {
      wide.push({tag: el.tagName, cls: el.className, right: r.right, text: el.textContent.slice(0, 60)});
    }
  }
  return {
    viewport: vw, scrollWidth: root.scrollWidth, bodyScrollWidth: doc.body.scrollWidth,
    height: root.scrollHeight, wide: wide.slice(0, 20),
    links: Array.from(doc.querySelectorAll('[href]'), a => a.getAttribute('href')),
    sources: Array.from(doc.querySelectorAll('[src], [srcset], [background]'), e => e.outerHTML.slice(0, 80)),
    resources: frame.contentWindow.performance.getEntriesByType('resource').map(e => e.name),
    scripts: doc.scripts.length,
    cards: doc.querySelectorAll('.card').length,
  };
}
window.addEventListener('load', () => {
  const out = {};
  for (const f of document.querySelectorAll('iframe')) out[f.dataset.width] = measure(f);
  const pre = document.createElement('pre');
  pre.id = 'result';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium(profile: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def test_digest_in_headless_chromium(tmp_path: Path) -> None:
    _, digest = sample_digest(marks=True)
    digest_file = tmp_path / "digest.html"
    digest_file.write_text(digest, encoding="utf-8")
    frames = "".join(
        f'<iframe data-width="{w}" width="{w}" height="900" style="border:0;display:block" '
        f'srcdoc="{html.escape(digest, quote=True)}"></iframe>'
        for w in WIDTHS
    )
    wrapper = tmp_path / "measure.html"
    wrapper.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:0'>"
                       f"{frames}{MEASURE}</body></html>", encoding="utf-8")
    update = os.environ.get("DIGESTD_UPDATE_SCREENSHOTS") == "1"
    shots = {w: (DOCS if update else tmp_path) / f"digest-{w}.png" for w in WIDTHS}
    if update:
        DOCS.mkdir(parents=True, exist_ok=True)

    # Three browsers at once (each ~1 s): the measurement and one screenshot per width.
    measure = _chromium(tmp_path / "p-measure", "--window-size=1100,1000", "--virtual-time-budget=5000",
                        "--dump-dom", wrapper.as_uri())
    shooters = [
        _chromium(tmp_path / f"p-{w}", f"--window-size={w},{SHOT_HEIGHT[w]}",
                  f"--screenshot={shots[w]}", digest_file.as_uri())
        for w in WIDTHS
    ]
    try:
        dom, _ = measure.communicate(timeout=60)
        for p in shooters:
            p.communicate(timeout=60)
    finally:
        for p in (measure, *shooters):
            if p.poll() is None:
                p.kill()
                p.wait()

    m = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert m, f"the measuring page did not report (chromium output: {dom[-500:]!r})"
    results = json.loads(html.unescape(m.group(1)))
    for w in WIDTHS:
        r = results[str(w)]
        assert r["viewport"] == w, r["viewport"]
        assert r["cards"] == 30  # 3 x 10; the paper shared by two keywords appears once
        assert r["scrollWidth"] <= w and r["bodyScrollWidth"] <= w, f"sideways scroll at {w}px: {r['scrollWidth']}"
        assert r["wide"] == [], f"wider than the {w}px viewport: {r['wide']}"
        assert r["scripts"] == 0 and r["sources"] == [] and r["resources"] == []
        bad = [u for u in r["links"] if not re.match(r"^(https?://|mailto:|#kw-\d+$)", u)]  # or the TOC's
        assert r["links"] and bad == [], f"links that are not absolute: {bad}"
    assert results["375"]["height"] > results["1024"]["height"]  # one column that wraps, not shrinks
    for w, path in shots.items():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", path
        assert int.from_bytes(data[16:20], "big") == w  # the PNG's width


CONTRAST = """
<script>
function rgb(s) { const m = s.match(/[\\d.]+/g).map(Number); return m.length > 3 && m[3] === 0 ? null : m; }
function lum(c) {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
}
function background(el, win) {
  for (; el; el = el.parentElement) { const c = rgb(win.getComputedStyle(el).backgroundColor); if (c) return c; }
  return [255, 255, 255];
}
window.addEventListener('load', () => {
  const f = document.querySelector('iframe'), doc = f.contentDocument, win = f.contentWindow;
  const worst = [];
  for (const el of doc.querySelectorAll('.headline, .kw, .title a, .authors, .meta, .abstract, .comment, .button, .also, .footer a, .tocline a, .hl, .foryou, .online a, .morein a')) {
    const a = lum(rgb(win.getComputedStyle(el).color)), b = lum(background(el, win));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push({cls: el.className, ratio});
  }
  const pre = document.createElement('pre');
  pre.id = 'result';
  pre.textContent = JSON.stringify({dark: win.matchMedia('(prefers-color-scheme: dark)').matches,
    page: lum(background(doc.querySelector('.page'), win)), low: worst.slice(0, 10)});
  document.body.appendChild(pre);
});
</script>
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_digest_colours_in_chromium(tmp_path: Path, scheme: str) -> None:
    """Dark emulation: a dark page with text at 4.5:1 or better; light: the same contrast rule.
    Screenshots of both schemes at both widths."""
    _, digest = sample_digest(per_keyword=4, marks=True)  # with an update per keyword, a reader's marks
    digest_file = tmp_path / "digest.html"
    digest_file.write_text(digest, encoding="utf-8")
    wrapper = tmp_path / "contrast.html"
    wrapper.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                       f'<iframe width="1024" height="900" srcdoc="{html.escape(digest, quote=True)}"></iframe>'
                       f"{CONTRAST}</body></html>", encoding="utf-8")
    dark = ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"] if scheme == "dark" else []
    update = os.environ.get("DIGESTD_UPDATE_SCREENSHOTS") == "1"
    suffix = "-dark" if scheme == "dark" else "-light"
    shots = {w: (DOCS if update else tmp_path) / f"digest-{w}{suffix}.png" for w in WIDTHS}
    procs = [_chromium(tmp_path / "p-c", *dark, "--window-size=1100,1000", "--virtual-time-budget=5000",
                       "--dump-dom", wrapper.as_uri())]
    procs += [_chromium(tmp_path / f"p-{w}", *dark, f"--window-size={w},{SHOT_HEIGHT[w]}",
                        f"--screenshot={shots[w]}", digest_file.as_uri()) for w in WIDTHS]
    try:
        dom, _ = procs[0].communicate(timeout=60)
        for p in procs[1:]:
            p.communicate(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    m = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert m, f"the contrast page did not report (chromium output: {dom[-500:]!r})"
    r = json.loads(html.unescape(m.group(1)))
    assert r["dark"] is (scheme == "dark")
    assert (r["page"] < 0.05) if scheme == "dark" else (r["page"] > 0.8), r  # relative luminance of the page
    assert r["low"] == [], f"text below 4.5:1 contrast: {r['low']}"
    for w, path in shots.items():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") == w
