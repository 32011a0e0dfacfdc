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
    """The first instant at or after `moment` whose local wall clock is outside [start, end):
    where the clock reaches `end`, or sooner if a change of UTC offset jumps it out."""
    local_zone = zone(tz)
    if not in_window(_wall_clock(moment, local_zone), start, end):
        return moment
    day = moment.astimezone(local_zone).date()
    candidate = next(
        c
        for c in (wall_instant(day + timedelta(days=ahead), end, local_zone) for ahead in range(3))
        if c > moment
    )
    if moment.astimezone(local_zone).utcoffset() != candidate.astimezone(local_zone).utcoffset():
        jump = _offset_change(moment, candidate, local_zone)
        if not in_window(_wall_clock(jump, local_zone), start, end):
            return jump
    return candidate


def wall_instant(day: date, clock: time, local_zone: ZoneInfo) -> datetime:
    """The first instant (UTC) the local wall clock shows `clock` on `day`; if a spring-forward
    gap skips that reading, the instant the clock jumps over it."""
    wall = datetime.combine(day, clock, tzinfo=local_zone)
    instant = wall.astimezone(UTC)
    if instant.astimezone(local_zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return instant
    before = wall.replace(fold=1).astimezone(UTC)  # read with the offset after the change
    return _offset_change(before, instant, local_zone)


def _wall_clock(moment: datetime, local_zone: ZoneInfo) -> time:
    return moment.astimezone(local_zone).time()


def _offset_change(low: datetime, high: datetime, local_zone: ZoneInfo) -> datetime:
    """The first instant in (low, high] with `high`'s UTC offset (to the millisecond)."""
    target = high.astimezone(local_zone).utcoffset()
    while high - low > MS:
        middle = low + (high - low) // 2
        if middle.astimezone(local_zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return high


def next_local_hour_start(moment: datetime, tz: str, hour: int) -> datetime:
    """The next start of local `hour` strictly after `moment` (today's if still ahead)."""
    local = moment.astimezone(zone(tz))
    candidate = datetime.combine(local.date(), time(hour), tzinfo=zone(tz))
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(hour), tzinfo=zone(tz))
    return candidate.astimezone(UTC)


WALL_TIME_SEARCH_DAYS = 8
"""Local days `next_wall_time` looks at: the start's own and the next seven cover every
weekday, so the search always ends."""


def next_wall_time(
    start: datetime, tz: str, clock: time, weekdays: frozenset[int] | None = None
) -> datetime:
    """The earliest instant at or after `start` at which the local wall clock in `tz` shows
    `clock` on a day whose `weekday()` is in `weekdays` (None: any day). A reading a
    spring-forward gap skips resolves to the first instant after the gap; a reading a
    fall-back repeats, to its first occurrence (one instant per local day, never two)."""
    local_zone = zone(tz)
    first_day = start.astimezone(local_zone).date()
    days = (first_day + timedelta(days=ahead) for ahead in range(WALL_TIME_SEARCH_DAYS))
    allowed = (day for day in days if weekdays is None or day.weekday() in weekdays)
    instants = (_day_instant(day, clock, local_zone) for day in allowed)
    # A week after the first day its weekday comes again, later than `start`: never reached
    # with a non-empty `weekdays`, the default only keeps the search bounded by construction.
    fallback = _day_instant(first_day + timedelta(days=7), clock, local_zone)
    return next((instant for instant in instants if instant >= start), fallback)


def _day_instant(day: date, clock: time, local_zone: ZoneInfo) -> datetime:
    """The first instant the wall clock shows `clock` on `day`, or, if a gap skips it, the
    exact instant of the jump (offset changes fall on whole seconds: searched in seconds)."""
    wall = datetime.combine(day, clock, tzinfo=local_zone)
    after = wall.astimezone(UTC)  # a skipped reading, read with the offset before the jump
    if after.astimezone(local_zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return after
    target = after.astimezone(local_zone).utcoffset()
    low = to_ms(wall.replace(fold=1).astimezone(UTC)) // 1000  # read with the offset after
    high = -(-to_ms(after) // 1000)
    while high - low > 1:
        middle = (low + high) // 2
        if from_ms(middle * 1000).astimezone(local_zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return from_ms(high * 1000)
