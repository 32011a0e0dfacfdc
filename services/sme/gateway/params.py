"""Query parameter types whose accepted values are exactly what their OpenAPI schema says,
so any value outside them is a 422 with the parameter's location, never a 500 further down
(ClickHouse's `Date` and `DateTime64` have ranges; Python's parsers accept more than ISO)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from pydantic import PlainValidator, WithJsonSchema

# ClickHouse `Date` (reports, rollups): 1970-01-01 .. 2149-06-06; whole years are documented.
DAY_MIN, DAY_MAX = date(1970, 1, 1), date(2148, 12, 31)
DAY_YEARS = r"^(19[7-9][0-9]|20[0-9]{2}|21[0-3][0-9]|214[0-8])-"
# ClickHouse `DateTime64` (activities): 1900-01-01 .. 2299-12-31.
MOMENT_MIN = datetime(1900, 1, 1, tzinfo=UTC)
MOMENT_MAX = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
MOMENT_YEARS = r"^(19[0-9]{2}|2[0-2][0-9]{2})-"

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?P<hms>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?P<fraction>\.[0-9]+)?(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_day(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date, YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date, YYYY-MM-DD") from None
    if not DAY_MIN <= day <= DAY_MAX:
        raise ValueError(f"must be between {DAY_MIN} and {DAY_MAX}")
    return day


def parse_moment(value: Any) -> datetime:
    """An RFC 3339 date-time (with `Z` or an offset), or a date (its UTC midnight); in UTC,
    within ClickHouse's DateTime64 range (a bound past it is the range's end)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time or a date")
    if _DATE.fullmatch(value):
        moment = datetime.combine(parse_day_any(value), time.min, tzinfo=UTC)
    else:
        match = _DATE_TIME.fullmatch(value)
        if match is None:
            raise ValueError("must be an RFC 3339 date-time (with Z or an offset) or a date")
        hms = match["hms"].replace(":60", ":59")  # a leap second reads as the second before
        fraction = (match["fraction"] or "")[:7]
        offset = match["offset"].upper().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(f"{match['date']}T{hms}{fraction}{offset}")
        except ValueError:
            raise ValueError("must be a valid date and time") from None
    year = int(value[:4])
    if not MOMENT_MIN.year <= year <= MOMENT_MAX.year:
        raise ValueError(f"year must be between {MOMENT_MIN.year} and {MOMENT_MAX.year}")
    return min(max(moment.astimezone(UTC), MOMENT_MIN), MOMENT_MAX)


def parse_day_any(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date, YYYY-MM-DD") from None


Day = Annotated[
    date,
    PlainValidator(parse_day),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "pattern": DAY_YEARS,
            "description": f"a UTC date, YYYY-MM-DD, {DAY_MIN} to {DAY_MAX}",
        }
    ),
]
Moment = Annotated[
    datetime,
    PlainValidator(parse_moment),
    WithJsonSchema(
        {
            "type": "string",
            "anyOf": [{"format": "date-time"}, {"format": "date"}],
            "pattern": MOMENT_YEARS,
            "description": "an RFC 3339 date-time with Z or an offset, or a date (its UTC "
            f"midnight), years {MOMENT_MIN.year} to {MOMENT_MAX.year}",
        }
    ),
]
