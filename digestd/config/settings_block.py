"""The `settings:` block of subscribers.yaml: each key, its type and range, and what it means."""

from __future__ import annotations

from email.utils import getaddresses, parseaddr
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digestd.config.invalid import Invalid, unknown_key
from digestd.config.settings import WEEKDAYS, Settings
from digestd.config.values import looks_like_email, url_problem

# The keys of `settings:` and the Settings attribute each fills.
_SETTING_KEYS = {
    "from": "sender",
    "timezone": "timezone",
    "readme_rows": "readme_rows",
    "max_results": "max_results",
    "full_abstracts": "full_abstracts",
    "weekly_day": "weekly_day",
    "public_url": "public_url",
    "max_rate": "max_rate",
    "connections": "connections",
    "pause_after_failures": "pause_after_failures",
    "stale_margin_days": "stale_margin_days",
    "list_name": "list_name",
    "open_signup": "open_signup",
    "bounce_address": "bounce_address",
    "soft_bounce_limit": "soft_bounce_limit",
    "alert_to": "alert_to",
    "silent_days": "silent_days",
    "feed_entries": "feed_entries",
    "archive_days": "archive_days",
}
_TEXT_SETTINGS = ("from", "timezone", "weekly_day", "public_url", "list_name", "bounce_address",
                  "alert_to")
_INT_SETTINGS = {
    "readme_rows": (1, 2000),
    "max_results": (1, 2000),
    "connections": (1, 64),
    "pause_after_failures": (1, 1000),
    "stale_margin_days": (0, 3650),
    "soft_bounce_limit": (1, 1000),
    "silent_days": (1, 30),
    "feed_entries": (1, 10000),
    "archive_days": (1, 36500),
}
# The slowest max_rate: one message every 1,000 s. Slower is a typo (1e-300 made the run wait
# for ever after its first message, holding the run lock, so every later run exited 75).
MIN_RATE = 0.001

def parse_settings(raw: Any) -> Settings:
    """The `settings:` block, every value checked for type and range."""
    if raw is None:
        return Settings()
    if not isinstance(raw, dict):
        raise Invalid(("settings",), "`settings` must be a mapping")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _SETTING_KEYS:
            raise unknown_key(("settings",), key, tuple(_SETTING_KEYS), "unknown setting {key}")
        if key == "weekly_day" and isinstance(value, str):
            value = value.lower()  # Monday is monday
        kwargs[_SETTING_KEYS[key]] = value
    settings = Settings(**kwargs)
    _check_types(settings)
    _check_values(settings)
    return settings


def _value(s: Settings, key: str) -> Any:
    return getattr(s, _SETTING_KEYS[key])


def _check_types(s: Settings) -> None:
    """Text where text belongs, whole numbers in range, a boolean for full_abstracts."""
    for key in _TEXT_SETTINGS:
        if _value(s, key) is not None and not isinstance(_value(s, key), str):
            raise Invalid(("settings", key), f"settings.{key} must be text")
    if not s.list_name.strip() or any(c in s.list_name for c in "\r\n"):
        raise Invalid(("settings", "list_name"), "settings.list_name must be one line of text")
    for key, (lo, hi) in _INT_SETTINGS.items():
        v = _value(s, key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise Invalid(("settings", key), f"settings.{key} must be a whole number from {lo} to {hi}")


def _check_values(s: Settings) -> None:
    """The values that must mean something: a timezone, a weekday, a rate, a URL, an address."""
    if s.timezone is not None:
        try:
            ZoneInfo(str(s.timezone))
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a long name
            raise Invalid(
                ("settings", "timezone"), f"unknown timezone {s.timezone!r} (e.g. Europe/Berlin)"
            ) from None
    if s.weekly_day not in WEEKDAYS:
        raise Invalid(
            ("settings", "weekly_day"), f"settings.weekly_day must be one of {', '.join(WEEKDAYS)}"
        )
    if s.max_rate is not None and (
        isinstance(s.max_rate, bool) or not isinstance(s.max_rate, int | float) or not s.max_rate >= MIN_RATE
    ):  # NaN too
        raise Invalid(
            ("settings", "max_rate"),
            f"settings.max_rate must be a positive number of messages per second, at least {MIN_RATE:g} "
            f"(one message every {1 / MIN_RATE:,.0f} s)",
        )
    if s.public_url is not None and (why := url_problem(str(s.public_url))):
        raise Invalid(("settings", "public_url"), f"settings.public_url {why}")
    if s.sender is not None and not looks_like_email(parseaddr(str(s.sender))[1]):
        raise Invalid(("settings", "from"), f"settings.from {s.sender!r} has no valid address")
    if s.sender is not None and len(getaddresses([str(s.sender)])) > 1:  # parseaddr keeps the first
        raise Invalid(("settings", "from"), f"settings.from {s.sender!r} names more than one address; "
                      "give one, like 'Daily Papers <papers@lab.example.org>'")
    if s.alert_to is not None and not looks_like_email(str(s.alert_to)):
        raise Invalid(("settings", "alert_to"), f"settings.alert_to {s.alert_to!r} is not an address")
    if s.bounce_address is not None and not looks_like_email(str(s.bounce_address)):
        raise Invalid(
            ("settings", "bounce_address"), f"settings.bounce_address {s.bounce_address!r} is not an address"
        )
    if not isinstance(s.full_abstracts, bool):
        raise Invalid(("settings", "full_abstracts"), "settings.full_abstracts must be true or false")
    if not isinstance(s.open_signup, bool):
        raise Invalid(("settings", "open_signup"), "settings.open_signup must be true or false")
