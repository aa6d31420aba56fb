"""Issue 10, point 7: Debian's SpamAssassin (local rules only, no network, no Bayes) scores
every sample digest below 1.0. CI installs `spamassassin` (.ci/run)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from digest_samples import KEYWORDS, SECRET, sample_additions, sample_renderer
from test_digest_features import day_with_updates, many_papers

from digestd.core.models import Paper
from digestd.core.morelike import more_like_link
from digestd.mail.message import build_message, message_id
from digestd.render.digest import count_new_updated, group_for_subscriber
from digestd.render.subject import period_label, subject_line

SA = shutil.which("spamassassin")
pytestmark = pytest.mark.skipif(SA is None, reason="needs `apt-get install spamassassin` (.ci/run installs it)")
SENDER = "Daily Papers <papers@example.org>"


def digest_bytes(adds: dict[str, list[Paper]], keywords: list[str], period: str, marks: bool = False) -> bytes:
    """A sample as mailed; `marks`: with a reader's "For you", "More like this" and "N more" (issue 12)."""
    r = sample_renderer()
    sections = group_for_subscriber(keywords, adds)
    more: dict[str, int] = {}
    if marks:
        sections = [(kw, [dataclasses.replace(e, for_you=i % 3 == 0, more_like=more_like_link(
            "https://papers.example.org", SECRET, "ada@example.org", e.paper.id)) for i, e in enumerate(es)])
            for kw, es in sections]
        more = {keywords[0]: 37}
    text, html = r.render("ada@example.org", sections, period=period, more_in=more)
    new, updated = count_new_updated(sections, "2026-11-23")
    return build_message(
        sender=SENDER, to_email="ada@example.org", to_name="Ada Lovelace",
        subject=subject_line("Daily Papers", period, new, updated, [kw for kw, _ in sections]),
        when=datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
        msg_id=message_id(SENDER, "ada@example.org", 7, "2026-11-23"),
        unsubscribe_url=r.list_unsubscribe("ada@example.org"), one_click=True,
        text=text, html=html, list_name="Daily Papers",
    ).data


def test_spamassassin_scores_every_sample_below_one() -> None:
    """The four golden kinds of digest and one with a reader's marks, scored by concurrent
    spamassassin processes."""
    one = {KEYWORDS[0]: day_with_updates()[KEYWORDS[0]]}
    samples = {
        "daily": (one, KEYWORDS[:1], "2026-11-23"),
        "weekly": (one, KEYWORDS[:1], period_label("2026-11-23", weekly=True)),
        "multi-keyword": (sample_additions(10), KEYWORDS, "2026-11-23"),
        "oversized": (many_papers(200), KEYWORDS, "2026-11-23"),
        "marked": (sample_additions(10), KEYWORDS, "2026-11-23", True),
    }
    assert SA is not None
    procs = {name: subprocess.Popen([SA, "-L", "-t", "--cf=use_bayes 0"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in samples}
    try:
        outs = {name: procs[name].communicate(digest_bytes(*samples[name]), timeout=300) for name in samples}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, (stdout, stderr) in outs.items():
        out = stdout.decode("utf-8", "replace")
        m = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", out, re.M)
        assert m, f"{name}: spamassassin gave no score: {stderr.decode()[-300:]}"
        assert float(m.group(1)) < 1.0, (name, out[out.find("Content analysis details"):][:1500])
