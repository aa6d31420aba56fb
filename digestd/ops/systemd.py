"""systemd units for running digestd unattended: a oneshot service started by a timer.

Rendering is pure (UnitOptions in, unit text out) so the units can be golden-tested and
checked with `systemd-analyze verify`; the few functions that touch the machine (owner
lookup, calendar validation, installing, asking systemctl) are small and separate.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from digestd.errors import DigestdError, UsageError
from digestd.store.atomic import write_atomic

SERVICE_NAME = "digestd.service"
TIMER_NAME = "digestd.timer"

# arXiv announces new submissions Sunday to Thursday at 20:00 US Eastern; run 90 minutes later.
# systemd reads weekday ranges Monday-first, so "Sun..Thu" is a parse error: this is the
# normalized form of "Sun,Mon..Thu".
DEFAULT_ON_CALENDAR = "Mon..Thu,Sun *-*-* 21:30:00 America/New_York"

SYSTEM_ENV_FILE = "/etc/digestd/digestd.env"
USER_ENV_FILE = "%h/.config/digestd/digestd.env"  # %h: the user manager's home specifier
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
UNIT_DIR_ENV = "DIGESTD_SYSTEMD_UNIT_DIR"  # overrides unit_dir(), so tests install into a tmp dir

# PrivateTmp= gives the service empty /tmp and /var/tmp: an instance under them would vanish.
_TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 - only compared, never written


@dataclass(frozen=True)
class UnitOptions:
    """Everything the two units depend on, so rendering needs no I/O."""

    home: Path  # absolute instance folder: WorkingDirectory=, ReadWritePaths=, --home
    python: str  # interpreter that runs `-m digestd` (sys.executable, symlinks kept)
    user_mode: bool  # True: a `systemctl --user` unit; False: a system unit with User=
    on_calendar: str  # OnCalendar= of the timer
    run_as: str | None  # User= (system units only)
    group: str | None  # Group= (system units only)
    env_file: str  # EnvironmentFile= value, in unit syntax (specifiers such as %h allowed)


def default_env_file(user_mode: bool) -> str:
    """Where the SMTP secrets live: /etc for a system unit, the user's config dir otherwise."""
    return USER_ENV_FILE if user_mode else SYSTEM_ENV_FILE


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
    _check_value("--on-calendar", spec)
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


def render_service(opts: UnitOptions) -> str:
    """digestd.service: one run of `digestd run` in a sandbox that can write only the instance."""
    _check_options(opts)
    home = str(opts.home)
    exec_start = " ".join(
        [
            _exec_word(opts.python),
            "-m",
            "digestd",
            "--home",
            _exec_word(home),
            "run",
        ]
    )
    lines = [
        "# Generated by `digestd systemd`; regenerate it rather than edit it.",
        "[Unit]",
        "Description=digestd: fetch new arXiv papers, mail digests, rewrite the README",
        "Documentation=man:systemd.service(5) man:systemd.exec(5)",
    ]
    if opts.user_mode:
        lines += [
            "# No network-online.target: a user manager cannot see or order after system units;",
            "# a run that finds the network down exits 75 and the next timer run retries.",
        ]
    else:
        lines += [
            "Wants=network-online.target",
            "After=network-online.target",
        ]
    lines += [
        "# To be alerted when a run fails (exit 1, or 75 = partly done), point this at a unit",
        "# that notifies you, e.g. one that runs `systemctl status --full %i | mail ...`:",
        "#OnFailure=notify-failure@%n.service",
        "",
        "[Service]",
        "Type=oneshot",
    ]
    if not opts.user_mode:
        lines.append("# The owner of the instance folder, so state/ and README.md stay theirs.")
        if opts.run_as:
            lines.append(f"User={_escape(opts.run_as)}")
        if opts.group:
            lines.append(f"Group={_escape(opts.group)}")
    lines += [
        f"WorkingDirectory={_escape(home)}",
        f"ExecStart={exec_start}",
        "# SMTP settings and secrets (see digestd.env.example); '-': a missing file is no error.",
        f"EnvironmentFile=-{opts.env_file}",
        "Environment=PYTHONUNBUFFERED=1",
        "SyslogIdentifier=digestd",
        "# Generous, but a stalled run (hung SMTP or arXiv connection) cannot block the next one.",
        "TimeoutStartSec=2h",
        "# No SuccessExitStatus=: exit 75 (partly done, retried next run) must show as failed.",
        "",
    ]
    lines += _user_hardening() if opts.user_mode else _system_hardening(opts.home)
    return "\n".join(lines) + "\n"


def render_timer(opts: UnitOptions) -> str:
    """digestd.timer: starts digestd.service on the calendar, catching up after downtime."""
    _check_options(opts)
    lines = [
        "# Generated by `digestd systemd`; regenerate it rather than edit it.",
        "[Unit]",
        "Description=Run digestd after arXiv's nightly announcement",
        "Documentation=man:systemd.timer(5) man:systemd.time(7)",
        "",
        "[Timer]",
        "# The default runs 90 minutes after arXiv announces (Sun-Thu 20:00 US Eastern);",
        "# change it with `digestd systemd --on-calendar SPEC`.",
        f"OnCalendar={_escape(opts.on_calendar)}",
        "# Run at the next boot if the machine was off at the scheduled time.",
        "Persistent=true",
        "# Spread the start so many instances do not hit the arXiv API at the same second.",
        "RandomizedDelaySec=10min",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return "\n".join(lines) + "\n"


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


def _system_hardening(home: Path) -> list[str]:
    """Sandboxing for a system unit: systemd runs as root and can set up every namespace."""
    lines = [
        "# Sandbox: the whole file system is read-only except the instance folder.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "# read-only, not yes: an instance or venv under /home or /root stays readable, and the",
        "# more specific ReadWritePaths= below makes the instance writable again.",
        "ProtectHome=read-only",
        f"ReadWritePaths={_path_word(str(home))}",
    ]
    if any(home == tmp or tmp in home.parents for tmp in _TMP_DIRS):
        lines.append("# No PrivateTmp=: it would hide an instance under /tmp or /var/tmp.")
    else:
        lines.append("PrivateTmp=yes")
    lines += [
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "CapabilityBoundingSet=",
        *_seccomp_hardening(),
    ]
    return lines


def _user_hardening() -> list[str]:
    """Sandboxing for a --user unit: only what needs no privileges."""
    return [
        "# Sandbox for a user unit: the user manager cannot set up mount namespaces, so",
        "# ProtectSystem=, ProtectHome=, PrivateTmp=, PrivateDevices=, ProtectKernel*= and the",
        "# like are left out (systemd < 253 ignores them, newer ones need user namespaces).",
        "# The settings below use no_new_privs and seccomp, which work unprivileged.",
        "NoNewPrivileges=yes",
        *_seccomp_hardening(),
    ]


def _seccomp_hardening() -> list[str]:
    return [
        "# HTTPS to arXiv, SMTP, and AF_UNIX for the resolver; nothing else.",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "# No MemoryDenyWriteExecute=: ctypes/cffi callbacks in Python libraries may need it.",
    ]


def _check_options(opts: UnitOptions) -> None:
    if not opts.home.is_absolute():
        raise UsageError(f"The instance folder must be an absolute path, not {opts.home}.")
    if not Path(opts.python).is_absolute():
        raise UsageError(f"The Python interpreter must be an absolute path, not {opts.python}.")
    for what, path in (("instance folder", str(opts.home)), ("Python interpreter", opts.python)):
        _check_value(f"The {what} path", path)
        if any(ch in "\"'\\" for ch in path):
            raise UsageError(f"The {what} path {path!r} contains a quote or backslash; move it.")
    _check_value("The environment file path", opts.env_file)
    _check_value("--on-calendar", opts.on_calendar)
    for value in (opts.run_as, opts.group):
        if value is not None:
            _check_value("The user or group name", value)


def _check_value(what: str, value: str) -> None:
    """A control character (a newline above all) would inject lines into the unit."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UsageError(f"{what} {value!r} contains a control character; systemd cannot use it.")


def _escape(value: str) -> str:
    """Escape systemd specifiers: a literal % must be written %%."""
    return value.replace("%", "%%")


def _path_word(value: str) -> str:
    """One word of a space-separated list (ReadWritePaths=), quoted if it has whitespace.

    _check_options has already refused quotes and backslashes, which would need escaping.
    """
    escaped = _escape(value)
    return f'"{escaped}"' if any(ch.isspace() for ch in value) else escaped


def _exec_word(value: str) -> str:
    """One word of ExecStart=: quoted like _path_word, and $ escaped (no variable expansion)."""
    return _path_word(value).replace("$", "$$")
