"""Files the environment names (DIGESTD_*_FILE secrets, DIGESTD_*_CA_FILE certificates): read
only when they are what they claim, checked when the configuration loads, a secret's content
never shown in a message."""

from __future__ import annotations

import ssl
from pathlib import Path

from digestd.errors import ConfigError
from digestd.store.readfile import read_regular

MAX_SECRET_BYTES = 64 * 1024  # a password or a few keys; a larger file is the wrong one


def read_secret_file(variable: str, file: str) -> str:
    """The text of a secret file named by `variable`, stripped; ConfigError names the variable
    and the file, never the content. Only a regular file of at most MAX_SECRET_BYTES is read:
    a FIFO would block for ever, /dev/zero would end in a MemoryError."""
    try:
        raw = read_regular(Path(file), MAX_SECRET_BYTES)
        if len(raw) > MAX_SECRET_BYTES:
            kib = MAX_SECRET_BYTES // 1024
            raise ConfigError(f"{variable} {file} is larger than {kib} KiB: is it the right file?")
        return raw.decode("utf-8").strip()
    except OSError as err:
        raise ConfigError(f"cannot read {variable} {file}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {variable} {file}: it is not UTF-8 text") from None


def check_ca_file(variable: str, file: str | None) -> str | None:
    """`file` if it holds certificates TLS can verify against; else ConfigError now, rather
    than every delivery failing at the first connection (a path to /etc/passwd, a DER file)."""
    if file is None:
        return None
    if not Path(file).is_file():
        raise ConfigError(f"{variable} {file} is not a file")
    try:
        ssl.create_default_context(cafile=file)
    except (ssl.SSLError, OSError, ValueError) as err:
        raise ConfigError(f"{variable} {file} holds no PEM certificate TLS can use "
                          f"({getattr(err, 'reason', None) or err.__class__.__name__})") from None
    return file
