"""Time arithmetic for the core: UTC inside, the user's zone only at the quiet-hours and
calendar-day edges. Integer epoch milliseconds are the storage form."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds in integer arithmetic (float timestamps lose a ms now and then)."""
    return (moment - EPOCH) // MS


def from_ms(ms: int) -> datetime:
    return EPOCH + ms * MS


def opt_to_ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)


def opt_from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(moment: datetime, tz: str) -> date:
    return moment.astimezone(zone(tz)).date()


def local_hour(moment: datetime, tz: str) -> int:
    return moment.astimezone(zone(tz)).hour


def next_local_midnight(moment: datetime, tz: str) -> datetime:
    local = moment.astimezone(zone(tz))
    tomorrow = datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=zone(tz))
    return tomorrow.astimezone(UTC)


def utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def next_utc_midnight(moment: datetime) -> datetime:
    day = moment.astimezone(UTC).date() + timedelta(days=1)
    return datetime.combine(day, time.min, tzinfo=UTC)


def in_window(clock: time, start: time, end: time) -> bool:
    """Is a local time inside [start, end)? A window with start > end wraps past midnight."""
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end


def next_time_outside(moment: datetime, tz: str, start: time, end: time) -> datetime:
    """The first instant at or after `moment` that is outside the local window [start, end)."""
    local = moment.astimezone(zone(tz))
    if not in_window(local.timetz().replace(tzinfo=None), start, end):
        return moment
    end_today = datetime.combine(local.date(), end, tzinfo=zone(tz))
    candidate = end_today if end_today > local else end_today + timedelta(days=1)
    # Re-normalise through UTC so DST transitions land on a real instant.
    return candidate.astimezone(UTC)


def next_local_hour_start(moment: datetime, tz: str, hour: int) -> datetime:
    """The next start of local `hour` strictly after `moment` (today's if still ahead)."""
    local = moment.astimezone(zone(tz))
    candidate = datetime.combine(local.date(), time(hour), tzinfo=zone(tz))
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(hour), tzinfo=zone(tz))
    return candidate.astimezone(UTC)
