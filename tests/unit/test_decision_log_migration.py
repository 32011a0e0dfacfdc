"""The decision log's materialized view copies exactly the activity types the dashboard lists
as decisions (the SQL cannot import the Python tuple, so this keeps the two in step)."""

from __future__ import annotations

import re
from importlib import resources

from sme.storage.dashboard import DECISIONS


def test_the_view_and_the_backfill_copy_exactly_the_decision_types() -> None:
    sql = (
        resources.files("sme.storage")
        .joinpath("migrations/0006_decision_log.sql")
        .read_text(encoding="utf-8")
    )
    lists = re.findall(r"type IN \(([^)]*)\)", sql)
    assert len(lists) == 2, "the view and the backfill"
    for found in lists:
        assert sorted(re.findall(r"'([a-z_]+)'", found)) == sorted(DECISIONS)
