"""Schedule arithmetic for scheduled campaigns: pure functions of the settings and a clock.

No database here. The scheduler (`campaigns/scheduler.py`) asks these functions which local
dates a campaign occurs on, at which UTC instant a wall-clock time happens in a zone, and
how the time zones of a tenant's users group into waves; the editor and the campaign page
show `describe(campaign)`.

The rules, which the README repeats:
- Monthly on a date the month does not have (the 29th–31st in a shorter month): the
  occurrence falls on the month's last day instead, once even if several chosen dates land
  there (the 30th and 31st in April make one occurrence, on the 30th).
- Annually on 29 February: on 28 February in years that are not leap years.
- A wall-clock time that does not exist that day (the hour a clock skips when daylight
  saving starts) happens at the next valid minute: 02:30 on the night Berlin jumps from
  02:00 to 03:00 is sent at 03:00 local.
- A wall-clock time that happens twice (the hour repeated when daylight saving ends) happens
  once, at its first occurrence (fold=0).
- Weekdays are 0 = Monday … 6 = Sunday, as `date.weekday()`.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ONCE, DAILY, WEEKLY, MONTHLY, ANNUALLY = "once", "daily", "weekly", "monthly", "annually"
GLOBAL, LOCAL = "global", "local"
ALL_ZONES = "*"  # a global wave's zones: everyone, whatever their own zone

# How far occurrence search looks past a date before deciding the schedule never occurs
# (every rule that occurs at all does so within a year and a day).
_SEARCH_DAYS = 367

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Schedule:
    """The schedule part of a campaign, detached from the model."""

    kind: str
    send_time: time | None
    send_date: date | None = None
    weekdays: tuple[int, ...] = ()
    month_days: tuple[int, ...] = ()
    zone_mode: str = GLOBAL
    zone: str = ""

    @classmethod
    def of(cls, campaign) -> Schedule:
        """Read the schedule fields of a Campaign (or anything with the same attributes;
        a model instance not yet reloaded may still hold ISO strings)."""
        send_time = getattr(campaign, "send_time", None)
        send_date = getattr(campaign, "send_date", None)
        return cls(
            kind=getattr(campaign, "schedule_kind", "") or "",
            send_time=time.fromisoformat(send_time) if isinstance(send_time, str) else send_time,
            send_date=date.fromisoformat(send_date) if isinstance(send_date, str) else send_date,
            weekdays=tuple(sorted({int(d) for d in getattr(campaign, "weekdays", None) or ()})),
            month_days=tuple(sorted({int(d) for d in getattr(campaign, "month_days", None) or ()})),
            zone_mode=getattr(campaign, "zone_mode", "") or GLOBAL,
            zone=getattr(campaign, "zone", "") or "",
        )

    def occurs_on(self, day: date) -> bool:
        """Whether this schedule has an occurrence on the local date `day`."""
        if self.send_time is None:
            return False
        if self.kind == ONCE:
            return day == self.send_date
        if self.kind == DAILY:
            return True
        if self.kind == WEEKLY:
            return day.weekday() in self.weekdays
        if self.kind == MONTHLY:
            last = calendar.monthrange(day.year, day.month)[1]
            return day.day in {min(d, last) for d in self.month_days if 1 <= d <= 31}
        if self.kind == ANNUALLY:
            if self.send_date is None:
                return False
            month, wanted = self.send_date.month, self.send_date.day
            last = calendar.monthrange(day.year, month)[1]
            return day.month == month and day.day == min(wanted, last)
        return False


@dataclass(frozen=True)
class Wave:
    """The zones whose wall clocks reach an occurrence's send time at the same instant."""

    due_at: datetime  # UTC
    zones: tuple[str, ...]


def as_schedule(campaign_or_schedule) -> Schedule:
    if isinstance(campaign_or_schedule, Schedule):
        return campaign_or_schedule
    return Schedule.of(campaign_or_schedule)


@lru_cache(maxsize=2048)
def zone_info(name: str) -> ZoneInfo | None:
    """The zone called `name`, or None when the name is not an IANA zone."""
    if not name or not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone(zone: ZoneInfo | str) -> ZoneInfo:
    if isinstance(zone, ZoneInfo):
        return zone
    found = zone_info(zone)
    if found is None:
        raise ValueError(f"unknown time zone {zone!r}")
    return found


def local_instant(day: date, at: time, zone: ZoneInfo | str) -> datetime:
    """The UTC instant at which the wall clock in `zone` shows `at` on `day`.

    A time the clock skips (a daylight-saving gap) gives the first minute after the gap;
    a time the clock shows twice (a fold) gives the first of the two."""
    tz = _zone(zone)
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    first = wall.replace(tzinfo=tz, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant  # exists (on a fold, fold=0 is the earlier of the two)
    # In a gap. fold=1 reads the wall time with the offset after the transition, which puts
    # it before the transition; fold=0 with the offset before, which puts it after. The
    # transition (the first valid instant, the gap's end on the wall clock) lies between:
    # find it by bisection, to the second, then round up to a whole minute.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = instant
    if low > high:
        low, high = high, low
    offset_after = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == offset_after:
            high = middle
        else:
            low = middle
    high = high.replace(microsecond=0)
    if high.second:
        high = high.replace(second=0) + timedelta(minutes=1)
    return high


def occurrence_dates(schedule, start: date) -> Iterator[date]:
    """The local dates the schedule occurs on, from `start` (inclusive), in order."""
    schedule = as_schedule(schedule)
    if schedule.send_time is None:
        return
    if schedule.kind == ONCE:
        if schedule.send_date is not None and schedule.send_date >= start:
            yield schedule.send_date
        return
    day, misses = start, 0
    while misses <= _SEARCH_DAYS:
        if schedule.occurs_on(day):
            yield day
            misses = 0
        else:
            misses += 1
        try:
            day += timedelta(days=1)
        except OverflowError:
            return


def occurrences_after(campaign, after: datetime, zone: ZoneInfo | str) -> Iterator[tuple[date, datetime]]:
    """(local date, UTC instant) of each occurrence in `zone` strictly after `after`, in order."""
    schedule = as_schedule(campaign)
    tz = _zone(zone)
    # The local date in `zone` at `after`, minus one: a gap can move an instant forward past
    # midnight of the next day, never back to the day before.
    start = after.astimezone(tz).date() - timedelta(days=1)
    for day in occurrence_dates(schedule, start):
        instant = local_instant(day, schedule.send_time, tz)
        if instant > after:
            yield day, instant


def waves(campaign, day: date, zone_names: Iterable[str], default_zone: str) -> list[Wave]:
    """The waves of the occurrence on local date `day`, earliest first.

    Global mode: one wave, at the send time in the campaign's zone (the default zone, the
    tenant's, when blank), for everyone (zones ("*",)). Per-user local mode: `zone_names`
    (the distinct zones of the tenant's users) and the default zone (for users without a
    zone, or with a name that is not a zone) grouped by the instant their wall clocks reach
    the send time on `day`; names that are not zones are left out (their users belong to
    the default zone's wave)."""
    schedule = as_schedule(campaign)
    if schedule.send_time is None:
        return []
    if schedule.zone_mode != LOCAL:
        zone = zone_info(schedule.zone) or _zone(default_zone)
        return [Wave(local_instant(day, schedule.send_time, zone), (ALL_ZONES,))]
    _zone(default_zone)  # must exist: it is where zoneless users go
    by_instant: dict[datetime, set[str]] = {}
    for name in {*zone_names, default_zone}:
        tz = zone_info(name)
        if tz is None:
            continue
        by_instant.setdefault(local_instant(day, schedule.send_time, tz), set()).add(name)
    return [Wave(at, tuple(sorted(names))) for at, names in sorted(by_instant.items())]


def first_due(campaign, day: date, zone_names: Iterable[str], default_zone: str) -> datetime | None:
    """The instant of the occurrence's first wave (None when the schedule has no time)."""
    planned = waves(campaign, day, zone_names, default_zone)
    return planned[0].due_at if planned else None


# --- Plain-language summaries ------------------------------------------------------------


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _short_date(day: date, *, year: bool) -> str:
    text = f"{day.day} {MONTH_ABBR[day.month - 1]}"
    return f"{text} {day.year}" if year else text


def _where(schedule: Schedule, tenant_zone: str) -> str:
    if schedule.zone_mode == LOCAL:
        return "in each user's time zone"
    if schedule.zone:
        return schedule.zone
    return tenant_zone or "in the app's time zone"


def _tenant_zone(campaign) -> str:
    try:
        tenant = campaign.tenant
    except Exception:  # an unsaved campaign without a tenant, or a plain object  # noqa: BLE001
        return ""
    return getattr(tenant, "time_zone", "") or ""


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _describe_trigger(campaign) -> str:
    event = getattr(campaign, "trigger_event", "") or ""
    if not event:
        return "No trigger yet"
    text = f"When “{event}” is recorded"
    if getattr(campaign, "trigger_params", None):
        text += " (with its parameter filters)"
    delay = int(getattr(campaign, "delay_seconds", 0) or 0)
    text += f", {_duration(delay)} later" if delay else ", at once"
    cancel = getattr(campaign, "cancel_event", "") or ""
    if cancel and delay:
        text += f", unless “{cancel}” happens first"
    return text


def describe(campaign) -> str:
    """A plain-language summary of when a campaign sends, e.g. "Every Monday and Thursday at
    09:00 in each user's time zone", "Daily at 18:30 Europe/Istanbul", "Once on 24 Dec 2026
    at 10:00 Europe/Istanbul". Triggered campaigns get their trigger summarised."""
    if getattr(campaign, "kind", "scheduled") == "triggered":
        return _describe_trigger(campaign)
    schedule = as_schedule(campaign)
    if not schedule.kind or schedule.send_time is None:
        return "Not scheduled yet"
    where = _where(schedule, _tenant_zone(campaign))
    at = f"at {schedule.send_time:%H:%M} {where}"
    if schedule.kind == ONCE:
        if schedule.send_date is None:
            return "Not scheduled yet"
        return f"Once on {_short_date(schedule.send_date, year=True)} {at}"
    if schedule.kind == DAILY:
        return f"Daily {at}"
    if schedule.kind == WEEKLY:
        days = [d for d in schedule.weekdays if 0 <= d <= 6]
        if not days:
            return "Weekly, on no day yet"
        if len(days) == 7:
            return f"Daily {at}"
        if days == [0, 1, 2, 3, 4]:
            return f"Every weekday (Monday to Friday) {at}"
        return f"Every {_join([WEEKDAY_NAMES[d] for d in days])} {at}"
    if schedule.kind == MONTHLY:
        days = [d for d in schedule.month_days if 1 <= d <= 31]
        if not days:
            return "Monthly, on no date yet"
        text = f"Monthly on the {_join([_ordinal(d) for d in days])} {at}"
        if days[-1] > 28:
            text += " (on the last day in months too short for a date)"
        return text
    if schedule.kind == ANNUALLY:
        if schedule.send_date is None:
            return "Annually, on no date yet"
        text = f"Every year on {_short_date(schedule.send_date, year=False)} {at}"
        if (schedule.send_date.month, schedule.send_date.day) == (2, 29):
            text += " (28 Feb in years without a 29th)"
        return text
    return "Not scheduled yet"
