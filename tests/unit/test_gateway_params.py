"""Date and moment query parameters accept exactly what their OpenAPI schema documents and
what ClickHouse can store; everything else is a ValueError (a 422 naming the parameter)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from sme.gateway.params import (
    DAY_MAX,
    DAY_MIN,
    DAY_YEARS,
    MOMENT_MAX,
    MOMENT_MIN,
    MOMENT_YEARS,
    parse_day,
    parse_moment,
)


def test_days_within_clickhouse_date_range_are_accepted() -> None:
    assert parse_day("1970-01-01") == DAY_MIN
    assert parse_day("2148-12-31") == DAY_MAX
    assert re.match(DAY_YEARS, "2148-12-31") and not re.match(DAY_YEARS, "2149-01-01")
    assert re.match(DAY_YEARS, "1970-01-01") and not re.match(DAY_YEARS, "1969-12-31")


@pytest.mark.parametrize(
    "bad",
    [
        "0999-01-01",
        "1969-12-31",
        "2149-01-01",
        "2024-02-30",
        "2024-1-1",
        "20240101",
        "2024-01-01T00:00:00Z",
        "0",
        "",
        "\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0661",
        "2024-01-01\x00",
        20240101,
    ],
)
def test_other_days_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_day(bad)


def test_moments_are_rfc3339_or_dates_read_in_utc_and_clamped_to_datetime64() -> None:
    assert parse_moment("2024-03-01") == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_moment("2024-03-01T10:00:00+02:00") == datetime(2024, 3, 1, 8, tzinfo=UTC)
    assert parse_moment("2024-03-01t10:00:00.1234567z") == datetime(
        2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_moment("2016-12-31T23:59:60Z").second == 59, "a leap second"
    assert parse_moment("1900-01-01T00:00:00+14:00") == MOMENT_MIN
    assert parse_moment("2299-12-31T23:59:59-14:00") == MOMENT_MAX
    assert re.match(MOMENT_YEARS, "1900-01-01") and not re.match(MOMENT_YEARS, "2300-01-01")
    assert parse_day("2024-03-01") == date(2024, 3, 1)


@pytest.mark.parametrize(
    "bad",
    [
        "0999-01-01",
        "0999-01-01T00:00:00Z",
        "2300-01-01",
        "2024-01-01T10:00:00",
        "2024-01-01T25:00:00Z",
        "2024-01-01T10:00Z",
        "0.5",
        "1700000000",
        "",
        None,
        1.5,
    ],
)
def test_other_moments_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_moment(bad)
