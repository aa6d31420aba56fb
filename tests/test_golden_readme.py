"""The README is byte for byte the "Daily Papers" format of two real snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import at, run_once, write_instance
from fakearxiv import FakeArxiv
from fixtures import SEEDS, parse_seed, seed_last_update


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_readme_matches_seed_byte_for_byte(tmp_path: Path, seed: str) -> None:
    path = SEEDS[seed]
    feeds = parse_seed(path)
    home = write_instance(tmp_path, list(feeds), [], readme_rows=20, max_results=100, timezone="UTC")
    with FakeArxiv(feeds) as fake:
        report = run_once(home, fake, now=at(seed_last_update(path)))
    assert not any(k.error for k in report.keywords), report.keywords
    assert all(k.baseline for k in report.keywords)
    produced = (home / "README.md").read_bytes()
    expected = path.read_bytes()
    if produced != expected:  # show the first differing line, not two 130 kB blobs
        for i, (a, b) in enumerate(zip(produced.splitlines(), expected.splitlines(), strict=False)):
            assert a == b, f"line {i + 1} differs"
    assert produced == expected


def test_classic_format_is_collapsed_the_same_way(tmp_path: Path) -> None:
    """The pre-2025 format hard-wraps titles and abstracts; the README must not show that."""
    path = SEEDS["000"]
    feeds = parse_seed(path)
    home = write_instance(tmp_path, list(feeds), [], timezone="UTC")
    with FakeArxiv(feeds, classic=True) as fake:
        run_once(home, fake, now=at(seed_last_update(path)))
    assert (home / "README.md").read_bytes() == path.read_bytes()


def test_a_failed_keyword_keeps_its_section_even_on_a_first_run(tmp_path: Path) -> None:
    """Adopting digestd over an existing README: a keyword whose first fetch fails keeps the
    section the README already had, byte for byte, instead of an empty table."""
    from fakearxiv import Fault

    path = SEEDS["000"]
    feeds = parse_seed(path)
    home = write_instance(tmp_path, list(feeds), [], timezone="UTC")
    (home / "README.md").write_bytes(path.read_bytes())
    broken = list(feeds)[2]
    with FakeArxiv(feeds) as fake:
        fake.faults[broken] = [Fault.status(503)] * 5
        report = run_once(home, fake, now=at(seed_last_update(path)))
    assert [k.keyword for k in report.keywords if k.error] == [broken]
    assert (home / "README.md").read_bytes() == path.read_bytes()


def test_readme_untouched_when_no_keyword_could_be_fetched(tmp_path: Path) -> None:
    from fakearxiv import Fault

    path = SEEDS["001"]
    feeds = parse_seed(path)
    home = write_instance(tmp_path, list(feeds), [], timezone="UTC")
    (home / "README.md").write_bytes(path.read_bytes())
    with FakeArxiv(feeds) as fake:
        fake.faults["*"] = [Fault.html()] * 20
        report = run_once(home, fake, now=at("2026-11-22"))
    assert all(k.error for k in report.keywords) and not report.readme_written
    assert (home / "README.md").read_bytes() == path.read_bytes()  # not even "Last update"


def test_a_readme_header_that_fails_to_render_is_one_sentence(tmp_path: Path) -> None:
    from digestd.errors import ConfigError
    from digestd.render.readme import render_readme
    from digestd.render.templates import text_env

    (tmp_path / "readme_header.md.j2").write_text("# Papers\n{{ no_such_value }}\n", encoding="utf-8")
    header = text_env(tmp_path).get_template("readme_header.md.j2")
    with pytest.raises(ConfigError, match=r"fails to render: 'no_such_value' is undefined$"):
        render_readme(header, "2026-11-20", [], max_results=10)
