"""Putting digestd's systemd units on the machine, and asking systemd about them.

The unit text is digestd.ops.unit_files' (pure); this module holds the few functions that
touch the machine: where units go, who owns the instance, which Python runs it, whether a
calendar spec parses, installing both units, and when the timer fires next.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from digestd.errors import DigestdError, UsageError
from digestd.ops.unit_files import (
    SERVICE_NAME,
    TIMER_NAME,
    UnitOptions,
    check_value,
    render_service,
    render_timer,
)
from digestd.store.atomic import write_atomic

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
UNIT_DIR_ENV = "DIGESTD_SYSTEMD_UNIT_DIR"  # overrides unit_dir(), so tests install into a tmp dir


def unit_dir(user_mode: bool) -> Path:
    """The directory systemd loads admin units from ($DIGESTD_SYSTEMD_UNIT_DIR wins)."""
    override = os.environ.get(UNIT_DIR_ENV)
    if override:
        return Path(override)
    if not user_mode:
        return SYSTEM_UNIT_DIR
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if config and Path(config).is_absolute() else Path.home() / ".config"
    return base / "systemd" / "user"


def instance_owner(home: Path) -> tuple[str, str]:
    """User and group owning the instance: a system unit runs as them so it can write state/.

    Names are used when the account databases know them, numeric ids otherwise (systemd
    accepts both).
    """
    try:
        st = home.stat()
    except OSError as exc:
        raise UsageError(f"Cannot read the instance folder {home}: {exc.strerror}.") from exc
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user, group


def python_executable() -> str:
    """The interpreter the unit runs: sys.executable, deliberately not the `digestd` script.

    `python -m digestd` works for every kind of install (venv, pipx, editable, --user), while
    the console script may live in another bin directory or not exist at all; and it is the
    same interpreter the script's shebang would name anyway. Symlinks are not resolved: a
    venv's bin/python is a symlink, and resolving it would lose the venv's packages.
    """
    exe = sys.executable
    if not exe or not Path(exe).is_absolute():
        raise DigestdError(f"Cannot tell which Python runs digestd (sys.executable={exe!r}).")
    return exe


def validate_on_calendar(spec: str) -> None:
    """Reject a calendar spec systemd would not parse, so a bad timer is never installed.

    Uses `systemd-analyze calendar` when it exists; without it only the unit-syntax checks run.
    """
    check_value("--on-calendar", spec)
    if not spec.strip():
        raise UsageError("--on-calendar must not be empty.")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    try:
        proc = subprocess.run(
            [analyze, "calendar", spec],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return  # the checker itself is broken: the spec is not known to be wrong
    if proc.returncode != 0:
        raise UsageError(
            f"--on-calendar {spec!r} is not a valid systemd calendar spec "
            "(see `man systemd.time`, or try `systemd-analyze calendar SPEC`)."
        )


def activation_commands(user_mode: bool, user_name: str | None = None) -> list[str]:
    """The commands that load and start the installed timer (digestd does not run them)."""
    flag = " --user" if user_mode else ""
    commands = [
        f"systemctl{flag} daemon-reload",
        f"systemctl{flag} enable --now {TIMER_NAME}",
    ]
    if user_mode:
        if user_name is None:
            try:
                user_name = pwd.getpwuid(os.geteuid()).pw_name
            except KeyError:  # a uid without a passwd entry (some containers)
                user_name = "$USER"
        # Without lingering the user manager, and so the timer, stops at logout.
        commands.append(f"loginctl enable-linger {user_name}")
    return commands


def install_units(opts: UnitOptions, unit_dir: Path, force: bool) -> list[str]:
    """Write both units atomically; refuse to replace a differing file unless force.

    Both files are checked before either is written, so a refusal changes nothing. Returns
    the messages to show: what happened to each file, then the systemctl commands to run.
    """
    wanted = {SERVICE_NAME: render_service(opts), TIMER_NAME: render_timer(opts)}
    current: dict[str, str | None] = {}
    for name in wanted:
        path = unit_dir / name
        try:
            current[name] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current[name] = None
        except (OSError, UnicodeDecodeError) as exc:
            raise DigestdError(f"Cannot read {path}: {exc}.") from exc
        if current[name] not in (None, wanted[name]) and not force:
            msg = f"{path} differs from the unit digestd would write; pass --force to overwrite it."
            raise UsageError(msg)
    messages: list[str] = []
    for name, text in wanted.items():
        path = unit_dir / name
        if current[name] == text:
            messages.append(f"{path} is already up to date.")
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text, mode=0o644)
        except OSError as exc:
            raise DigestdError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
        verb = "Replaced" if current[name] is not None else "Wrote"
        messages.append(f"{verb} {path}.")
    messages.append("Now run:")
    messages += [f"  {cmd}" for cmd in activation_commands(opts.user_mode)]
    return messages


def next_timer_run(user: bool, *, timeout: float = 5.0) -> str | None:
    """When digestd.timer fires next, as systemctl prints it, for `digestd status`.

    None when systemctl is missing, the timer is not installed or not active, or anything
    goes wrong: status output must never fail because of it.
    """
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    cmd = [systemctl]
    if user:
        cmd.append("--user")
    cmd += [
        "show",
        TIMER_NAME,
        "--no-pager",
        "--property=LoadState,ActiveState,NextElapseUSecRealtime",
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    props: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    if props.get("LoadState") != "loaded" or props.get("ActiveState") != "active":
        return None
    when = props.get("NextElapseUSecRealtime", "")
    if not when or when in {"n/a", "0", "infinity"}:
        return None
    return when
