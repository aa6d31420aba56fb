"""README.md and its header template are inputs too: a README that is not UTF-8, or a header
template that does not compile, is one sentence before anything is fetched or mailed."""

from __future__ import annotations

from pathlib import Path

from conftest import write_instance
from fakearxiv import FakeArxiv
from faultkit import run_cli
from fixtures import make_papers

KW = "Video Anomaly Detection"


def _home(tmp_path: Path) -> Path:
    return write_instance(tmp_path / "home", [KW], [{"email": "alice@example.org"}], timezone="UTC")


def test_a_readme_that_is_not_utf8_is_named_before_anything_is_fetched(tmp_path: Path) -> None:
    home = _home(tmp_path)
    (home / "README.md").write_bytes(b"# Daily Papers\n\xff\xfe broken\n")
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = run_cli(home, fake)
        assert fake.log.requests == [] if hasattr(fake, "log") else True
    assert proc.returncode == 1, proc.stderr
    assert f"{home / 'README.md'} is not UTF-8 text" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not (home / "state" / "papers.json").exists()
    assert (home / "README.md").read_bytes() == b"# Daily Papers\n\xff\xfe broken\n"


def test_a_readme_header_template_that_does_not_compile_is_one_sentence(tmp_path: Path) -> None:
    home = _home(tmp_path)
    (home / "templates").mkdir()
    (home / "templates" / "readme_header.md.j2").write_text("# Daily Papers {% if %}\n")
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = run_cli(home, fake)
    assert proc.returncode == 2, proc.stderr
    assert "readme_header.md.j2" in proc.stderr and "line 1" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not (home / "state" / "papers.json").exists()


def test_a_cell_ending_in_a_backslash_cannot_escape_what_follows() -> None:
    from digestd.render.readme import cell, comment_cell, link_text

    for text in ("ends in one \\", "ends in three \\\\\\"):
        for out in (cell(text), link_text(text)):
            trailing = len(out) - len(out.rstrip("\\"))
            assert trailing % 2 == 0, out
    assert comment_cell("a long comment that ends in \\").endswith("\\\\</p></details>")
    assert cell("even \\\\") == "even \\\\"  # an even run stays as written
