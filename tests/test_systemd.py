"""digestd systemd: golden unit files, systemd-analyze verify, install rules, next_timer_run.

Golden files live in tests/data/systemd/. After an intended change to the units, regenerate
them with `DIGESTD_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_systemd.py` and review the diff.

The verify tests need `systemd-analyze` (Debian package `systemd`); they skip, saying so,
only when it is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from pytest import MonkeyPatch
from typer.testing import CliRunner

from digestd.cli.context import CliContext
from digestd.cli.systemd_cmd import register
from digestd.errors import DigestdError, ExitCode, UsageError
from digestd.ops import systemd, unit_files
from digestd.ops.unit_files import UnitOptions

GOLDEN = Path(__file__).parent / "data" / "systemd"
UPDATE = os.environ.get("DIGESTD_UPDATE_GOLDEN") == "1"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package: systemd)"
)

SYSTEM_OPTS = UnitOptions(
    home=Path("/srv/digestd"),
    python="/opt/digestd/.venv/bin/python",
    user_mode=False,
    on_calendar=unit_files.DEFAULT_ON_CALENDAR,
    run_as="digestd",
    group="digestd",
    env_file=unit_files.SYSTEM_ENV_FILE,
)
USER_OPTS = UnitOptions(
    home=Path("/home/alice/papers"),
    python="/home/alice/.local/share/pipx/venvs/digestd/bin/python",
    user_mode=True,
    on_calendar=unit_files.DEFAULT_ON_CALENDAR,
    run_as=None,
    group=None,
    env_file=unit_files.USER_ENV_FILE,
)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path}; run with DIGESTD_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; see module docstring"


def keys(unit: str) -> dict[str, list[str]]:
    """Settings of a unit text, comments dropped: key -> values in order."""
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


# --- golden files and what they must say ---------------------------------------------


def test_system_service_golden() -> None:
    check_golden("digestd.system.service", unit_files.render_service(SYSTEM_OPTS))


def test_user_service_golden() -> None:
    check_golden("digestd.user.service", unit_files.render_service(USER_OPTS))


def test_timer_golden_is_the_same_for_both_modes() -> None:
    timer = unit_files.render_timer(SYSTEM_OPTS)
    check_golden("digestd.timer", timer)
    assert unit_files.render_timer(USER_OPTS) == timer


def test_system_service_settings() -> None:
    k = keys(unit_files.render_service(SYSTEM_OPTS))
    assert k["Type"] == ["oneshot"]
    assert k["ExecStart"] == ["/opt/digestd/.venv/bin/python -m digestd --home /srv/digestd run"]
    assert k["WorkingDirectory"] == ["/srv/digestd"]
    assert k["ReadWritePaths"] == ["/srv/digestd"]
    assert k["User"] == ["digestd"]
    assert k["Group"] == ["digestd"]
    assert k["EnvironmentFile"] == ["-/etc/digestd/digestd.env"]
    assert k["ProtectSystem"] == ["strict"]
    assert k["ProtectHome"] == ["read-only"]
    assert k["PrivateTmp"] == ["yes"]
    assert k["NoNewPrivileges"] == ["yes"]
    assert k["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert k["TimeoutStartSec"] == ["2h"]
    assert k["Wants"] == ["network-online.target"]
    assert k["After"] == ["network-online.target"]
    # Exit 75 (partly done) must count as a failure so monitoring sees it.
    assert "SuccessExitStatus" not in k
    assert "Restart" not in k


def test_user_service_keeps_only_unprivileged_sandboxing() -> None:
    text = unit_files.render_service(USER_OPTS)
    k = keys(text)
    assert k["EnvironmentFile"] == ["-%h/.config/digestd/digestd.env"]
    for needs_namespaces in (
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ReadWritePaths",
        "ProtectKernelTunables",
        "CapabilityBoundingSet",
        "User",
        "Group",
    ):
        assert needs_namespaces not in k, needs_namespaces
    assert k["NoNewPrivileges"] == ["yes"]
    assert k["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "# Sandbox for a user unit" in text


def test_timer_settings() -> None:
    k = keys(unit_files.render_timer(SYSTEM_OPTS))
    assert k["OnCalendar"] == ["Mon..Thu,Sun *-*-* 21:30:00 America/New_York"]
    assert k["Persistent"] == ["true"]
    assert k["RandomizedDelaySec"] == ["10min"]
    assert k["WantedBy"] == ["timers.target"]


def test_instance_under_tmp_gets_no_private_tmp() -> None:
    opts = UnitOptions(**{**SYSTEM_OPTS.__dict__, "home": Path("/var/tmp/digestd")})
    text = unit_files.render_service(opts)
    assert "PrivateTmp" not in keys(text)
    assert "# No PrivateTmp=" in text


def test_paths_are_quoted_and_specifiers_escaped() -> None:
    opts = UnitOptions(
        **{**SYSTEM_OPTS.__dict__, "home": Path("/srv/my papers 100%"), "python": "/opt/$p/python"}
    )
    k = keys(unit_files.render_service(opts))
    assert k["ExecStart"] == ['/opt/$$p/python -m digestd --home "/srv/my papers 100%%" run']
    assert k["WorkingDirectory"] == ["/srv/my papers 100%%"]
    assert k["ReadWritePaths"] == ['"/srv/my papers 100%%"']


@pytest.mark.parametrize(
    "change",
    [
        {"home": Path("/srv/a\nExecStartPre=/bin/evil")},
        {"home": Path('/srv/"quoted"')},
        {"python": "relative/python"},
        {"on_calendar": "daily\nUser=root"},
    ],
)
def test_unsafe_values_are_refused(change: dict[str, object]) -> None:
    opts = UnitOptions(**{**SYSTEM_OPTS.__dict__, **change})
    with pytest.raises(UsageError):
        unit_files.render_service(opts)


# --- systemd-analyze ----------------------------------------------------------------


def analyze_env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(exist_ok=True)
    return {
        **os.environ,
        "SYSTEMD_LOG_LEVEL": "warning",  # syntax problems are logged as warnings
        "SYSTEMD_LOG_COLOR": "0",
        "XDG_RUNTIME_DIR": str(runtime),  # `verify --user` needs one
    }


def verify(tmp_path: Path, opts: UnitOptions) -> subprocess.CompletedProcess[str]:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / "digestd.service").write_text(unit_files.render_service(opts))
    (unit_dir / "digestd.timer").write_text(unit_files.render_timer(opts))
    assert ANALYZE is not None
    cmd = [ANALYZE, "verify", "--man=no"]
    if opts.user_mode:
        cmd.append("--user")
    cmd += [str(unit_dir / "digestd.service"), str(unit_dir / "digestd.timer")]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=analyze_env(tmp_path), timeout=60, check=False
    )


def fake_python(tmp_path: Path) -> str:
    """verify checks that ExecStart's binary exists and is executable; a space tests quoting."""
    exe = tmp_path / "venv dir" / "bin" / "python"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return str(exe)


@needs_analyze
@pytest.mark.parametrize("user_mode", [False, True], ids=["system", "user"])
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path, user_mode: bool) -> None:
    me = pwd.getpwuid(os.geteuid())
    # A home outside /tmp keeps PrivateTmp= in the system unit; verify does not need it to exist.
    opts = UnitOptions(
        home=Path("/srv/digestd 100%"),
        python=fake_python(tmp_path),
        user_mode=user_mode,
        on_calendar=unit_files.DEFAULT_ON_CALENDAR,
        run_as=None if user_mode else me.pw_name,
        group=None if user_mode else me.pw_name,
        env_file=unit_files.default_env_file(user_mode),
    )
    proc = verify(tmp_path, opts)
    # verify exits 0 even for unknown keys or unparsable values: its output must be empty too.
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stderr.strip() == "" and proc.stdout.strip() == "", proc.stderr + proc.stdout


@needs_analyze
def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """Guards the test above: a bad value must show up in verify's output."""
    opts = UnitOptions(**{**SYSTEM_OPTS.__dict__, "python": fake_python(tmp_path), "run_as": None})
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    bad = unit_files.render_service(opts).replace("TimeoutStartSec=2h", "TimeoutStartSec=2 fortnights")
    (unit_dir / "digestd.service").write_text(bad)
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit_dir / "digestd.service")],
        capture_output=True,
        text=True,
        env=analyze_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert "TimeoutStartSec" in proc.stderr + proc.stdout


@needs_analyze
def test_default_on_calendar_is_valid() -> None:
    systemd.validate_on_calendar(unit_files.DEFAULT_ON_CALENDAR)


@needs_analyze
def test_bad_on_calendar_is_a_usage_error() -> None:
    # The spec's first idea, "Sun..Thu", is not valid: systemd weekday ranges start on Monday.
    with pytest.raises(UsageError, match=r"Sun\.\.Thu") as err:
        systemd.validate_on_calendar("Sun..Thu *-*-* 21:30:00")
    assert err.value.exit_code == ExitCode.USAGE


def test_on_calendar_is_not_validated_without_systemd_analyze(
    monkeypatch: MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    systemd.validate_on_calendar("whenever")  # cannot check: accepted
    with pytest.raises(UsageError):
        systemd.validate_on_calendar("daily\nUser=root")  # unit syntax is still checked


# --- install --------------------------------------------------------------------------


def test_install_writes_then_is_a_noop(tmp_path: Path) -> None:
    units = tmp_path / "systemd" / "user"  # created when missing
    first = systemd.install_units(USER_OPTS, units, force=False)
    assert first[:2] == [f"Wrote {units / 'digestd.service'}.", f"Wrote {units / 'digestd.timer'}."]
    assert "  systemctl --user daemon-reload" in first
    assert "  systemctl --user enable --now digestd.timer" in first
    assert any(m.startswith("  loginctl enable-linger ") for m in first)
    assert (units / "digestd.service").read_text() == unit_files.render_service(USER_OPTS)
    assert (units / "digestd.timer").read_text() == unit_files.render_timer(USER_OPTS)
    assert (units / "digestd.service").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in units.iterdir()) == ["digestd.service", "digestd.timer"]

    mtime = (units / "digestd.service").stat().st_mtime_ns
    second = systemd.install_units(USER_OPTS, units, force=False)
    assert second[:2] == [
        f"{units / 'digestd.service'} is already up to date.",
        f"{units / 'digestd.timer'} is already up to date.",
    ]
    assert (units / "digestd.service").stat().st_mtime_ns == mtime


def test_install_refuses_a_changed_unit_without_force(tmp_path: Path) -> None:
    systemd.install_units(SYSTEM_OPTS, tmp_path, force=False)
    edited = (tmp_path / "digestd.timer").read_bytes().replace(b"21:30", b"06:00")
    (tmp_path / "digestd.timer").write_bytes(edited)
    other = UnitOptions(**{**SYSTEM_OPTS.__dict__, "home": Path("/srv/other")})
    service_before = (tmp_path / "digestd.service").read_bytes()

    with pytest.raises(UsageError) as err:
        systemd.install_units(other, tmp_path, force=False)
    assert err.value.exit_code == ExitCode.USAGE
    message = str(err.value)
    assert str(tmp_path / "digestd.service") in message and "--force" in message
    # Nothing was changed: neither the differing file nor the other one.
    assert (tmp_path / "digestd.timer").read_bytes() == edited
    assert (tmp_path / "digestd.service").read_bytes() == service_before

    messages = systemd.install_units(other, tmp_path, force=True)
    assert messages[:2] == [
        f"Replaced {tmp_path / 'digestd.service'}.",
        f"Replaced {tmp_path / 'digestd.timer'}.",
    ]
    assert "  systemctl daemon-reload" in messages
    assert not any("loginctl" in m for m in messages)
    assert (tmp_path / "digestd.service").read_text() == unit_files.render_service(other)
    assert (tmp_path / "digestd.timer").read_text() == unit_files.render_timer(other)


def test_unit_dir(monkeypatch: MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(systemd.UNIT_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert systemd.unit_dir(True) == tmp_path / "cfg" / "systemd" / "user"
    assert systemd.unit_dir(False) == Path("/etc/systemd/system")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert systemd.unit_dir(True) == tmp_path / ".config" / "systemd" / "user"
    monkeypatch.setenv(systemd.UNIT_DIR_ENV, str(tmp_path / "override"))
    assert systemd.unit_dir(True) == systemd.unit_dir(False) == tmp_path / "override"


# --- the command ----------------------------------------------------------------------


def make_app(home: Path) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = CliContext(home=home, log_level="info")

    register(app)
    return app


def run_cli(home: Path, *args: str) -> tuple[int, str]:
    """Invoke like the real main does: a DigestdError becomes its message and exit code."""
    result = CliRunner().invoke(make_app(home), ["systemd", *args])
    if isinstance(result.exception, DigestdError):
        return int(result.exception.exit_code), str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "instance"
    path.mkdir()
    return path


def test_cli_prints_both_units(home: Path) -> None:
    code, out = run_cli(home, "--system")
    assert code == 0
    service, timer = out.split("# digestd.timer\n")
    assert service.startswith("# digestd.service\n")
    me = pwd.getpwuid(home.stat().st_uid).pw_name
    assert f"User={me}\n" in service
    assert f"ExecStart={sys.executable} -m digestd --home {home} run\n" in service
    assert f"ReadWritePaths={home}\n" in service
    assert "OnCalendar=Mon..Thu,Sun *-*-* 21:30:00 America/New_York\n" in timer


def test_cli_user_mode_and_custom_calendar(home: Path) -> None:
    code, out = run_cli(home, "--user", "--on-calendar", "*-*-* 06:00:00")
    assert code == 0
    assert "EnvironmentFile=-%h/.config/digestd/digestd.env\n" in out
    assert "User=" not in out
    assert "OnCalendar=*-*-* 06:00:00\n" in out


def test_cli_default_mode_follows_euid(home: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert "ProtectSystem=strict" in run_cli(home)[1]
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert "ProtectSystem=strict" not in run_cli(home)[1]


def test_cli_install_and_refusal(home: Path, tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    units = tmp_path / "units"
    monkeypatch.setenv(systemd.UNIT_DIR_ENV, str(units))
    code, out = run_cli(home, "--user", "--install")
    assert code == 0
    assert f"Wrote {units / 'digestd.service'}." in out
    assert "systemctl --user enable --now digestd.timer" in out

    code, out = run_cli(home, "--user", "--install")
    assert code == 0
    assert "already up to date" in out

    (units / "digestd.service").write_text("# mine\n")
    code, out = run_cli(home, "--user", "--install", "--on-calendar", "*-*-* 06:00:00")
    assert code == ExitCode.USAGE
    assert str(units / "digestd.service") in out and "--force" in out
    assert (units / "digestd.service").read_text() == "# mine\n"
    assert "21:30:00" in (units / "digestd.timer").read_text()

    code, out = run_cli(home, "--user", "--install", "--force", "--on-calendar", "*-*-* 06:00:00")
    assert code == 0
    assert "OnCalendar=*-*-* 06:00:00" in (units / "digestd.timer").read_text()


@needs_analyze
def test_cli_bad_on_calendar_exits_2(home: Path, tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv(systemd.UNIT_DIR_ENV, str(tmp_path / "units"))
    code, out = run_cli(home, "--install", "--on-calendar", "every full moon")
    assert code == 2
    assert "every full moon" in out
    assert not (tmp_path / "units").exists()


def test_cli_missing_instance_exits_2(tmp_path: Path) -> None:
    code, out = run_cli(tmp_path / "nope")
    assert code == 2
    assert str(tmp_path / "nope") in out


# --- next_timer_run -------------------------------------------------------------------


def fake_systemctl(tmp_path: Path, monkeypatch: MonkeyPatch, body: str) -> Path:
    """Put a `systemctl` shell script first on PATH; it logs its arguments to args.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args.txt\n{body}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tmp_path / "args.txt"


NEXT = "Mon 2026-11-23 21:30:00 EST"
ACTIVE = f"printf 'LoadState=loaded\\nActiveState=active\\nNextElapseUSecRealtime={NEXT}\\n'"


@pytest.mark.parametrize("user", [True, False])
def test_next_timer_run(tmp_path: Path, monkeypatch: MonkeyPatch, user: bool) -> None:
    args = fake_systemctl(tmp_path, monkeypatch, ACTIVE)
    assert systemd.next_timer_run(user) == NEXT
    expected = "--user show digestd.timer" if user else "show digestd.timer"
    assert args.read_text().startswith(expected)


@pytest.mark.parametrize(
    "body",
    [
        "printf 'LoadState=not-found\\nActiveState=inactive\\nNextElapseUSecRealtime=\\n'",
        "printf 'LoadState=loaded\\nActiveState=inactive\\nNextElapseUSecRealtime=\\n'",
        "printf 'LoadState=loaded\\nActiveState=active\\nNextElapseUSecRealtime=n/a\\n'",
        "echo 'System has not been booted with systemd' >&2; exit 1",
        "printf '\\377\\376 garbage'",
    ],
    ids=["not-installed", "inactive", "no-next", "no-systemd", "garbage"],
)
def test_next_timer_run_none(tmp_path: Path, monkeypatch: MonkeyPatch, body: str) -> None:
    fake_systemctl(tmp_path, monkeypatch, body)
    assert systemd.next_timer_run(False) is None


def test_next_timer_run_times_out(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, "exec sleep 5")
    assert systemd.next_timer_run(True, timeout=0.3) is None


def test_next_timer_run_without_systemctl(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert systemd.next_timer_run(True) is None
