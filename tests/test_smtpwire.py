"""The one module that uses aiosmtplib's private protocol attributes fails loudly when they
change: outside the pinned version range, or on a protocol object without them."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from conftest import Inbox

from digestd.mail import smtpwire

REPO = Path(__file__).resolve().parent.parent


def test_the_pinned_range_in_pyproject_matches_the_checked_range() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith("aiosmtplib")]
    low, high = smtpwire.SUPPORTED
    assert spec == f"aiosmtplib>={low[0]}.{low[1]},<{high[0]}"
    smtpwire.check_version()  # the installed one is in range


@pytest.mark.parametrize("version", ["2.9.0", "6.0.0", "7.1"])
def test_a_version_outside_the_range_is_refused(version: str) -> None:
    with pytest.raises(smtpwire.SmtpWireError, match=version):
        smtpwire.check_version(version)


def test_a_protocol_without_the_private_attributes_fails_loudly(smtp: tuple[Any, Inbox]) -> None:
    controller, inbox = smtp

    async def go() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=controller.port, timeout=5)
        await client.connect()
        try:
            await client.mail("a@example.org")
            await client.rcpt("b@example.org")
            del client.protocol._response_pending  # what a new aiosmtplib might look like
            with pytest.raises(smtpwire.SmtpWireError, match="no longer has the protocol attributes"):
                await smtpwire.data(client, b"Subject: x\r\n\r\nx\r\n", timeout=5, final_timeout=5)
        finally:
            client.close()

    asyncio.run(go())
    assert inbox.raw == []


def test_data_delivers_the_bytes_through_the_private_path(smtp: tuple[Any, Inbox]) -> None:
    controller, inbox = smtp

    async def go() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=controller.port, timeout=5)
        await client.connect()
        await client.mail("a@example.org")
        await client.rcpt("b@example.org")
        await smtpwire.data(client, b"Subject: x\r\n\r\n..dot\r\n", timeout=5, final_timeout=5)
        await client.quit()

    asyncio.run(go())
    assert inbox.raw == [b"Subject: x\r\n\r\n.dot\r\n"]
