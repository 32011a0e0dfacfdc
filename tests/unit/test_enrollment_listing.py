"""Reading a list-enrollment request: JSON or NDJSON, users distinct in order, every invalid
field located, the batch's digest independent of order, and the route's wider body limit."""

from __future__ import annotations

import orjson
import pytest
from fastapi import HTTPException

from sme.contracts.enrollments import MAX_ENROLLMENT_BODY, MAX_ENROLLMENT_USERS
from sme.gateway.config_service import InvalidConfigError
from sme.gateway.enrollments_api import JSON, NDJSON, WIDER_BODIES, parse_listing
from sme.gateway.http_guards import MAX_BODY, BodyLimit

API = "/api/v1/035-sequential-messaging-engine"


def as_json(body: object) -> bytes:
    return orjson.dumps(body)


def as_ndjson(*lines: object) -> bytes:
    return b"\n".join(orjson.dumps(line) for line in lines) + b"\n"


def locs(exc: pytest.ExceptionInfo[InvalidConfigError]) -> list[list[str | int]]:
    return [e["loc"] for e in exc.value.errors]


def test_a_json_list_keeps_each_user_once_in_order_and_counts_the_repeats() -> None:
    listed = parse_listing(JSON, as_json({"batch_id": "b-1", "user_ids": ["a", "b", "a"]}), None)

    assert (listed.batch_id, list(listed.users), listed.received) == ("b-1", ["a", "b"], 3)
    assert listed.duplicates == 1


def test_each_invalid_user_id_is_located_by_its_index() -> None:
    body = {"batch_id": "b-1", "user_ids": ["ok", "", 7, " "]}

    with pytest.raises(InvalidConfigError) as exc:
        parse_listing(JSON, as_json(body), None)

    assert locs(exc) == [["body", "user_ids", 1], ["body", "user_ids", 2], ["body", "user_ids", 3]]


def test_more_users_than_the_limit_are_refused_on_the_list() -> None:
    body = {"batch_id": "b-1", "user_ids": [f"u{i}" for i in range(MAX_ENROLLMENT_USERS + 1)]}

    with pytest.raises(InvalidConfigError) as exc:
        parse_listing(JSON, as_json(body), None)

    assert locs(exc) == [["body", "user_ids"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"user_ids": ["a"]}, ["body", "batch_id"]),
        ({"batch_id": "-starts-with-dash", "user_ids": ["a"]}, ["body", "batch_id"]),
        ({"batch_id": "b", "user_ids": []}, ["body", "user_ids"]),
        ({"batch_id": "b", "user_ids": ["a"], "extra": 1}, ["body", "extra"]),
        (["a"], ["body"]),
    ],
)
def test_a_malformed_json_request_is_refused_where_it_is_wrong(
    body: object, loc: list[str]
) -> None:
    with pytest.raises(InvalidConfigError) as exc:
        parse_listing(JSON, as_json(body), None)

    assert locs(exc) == [loc]


def test_a_query_batch_id_must_match_the_bodys() -> None:
    body = as_json({"batch_id": "b-1", "user_ids": ["a"]})

    assert parse_listing(JSON, body, "b-1").batch_id == "b-1"
    with pytest.raises(InvalidConfigError) as exc:
        parse_listing(JSON, body, "b-2")
    assert locs(exc) == [["query", "batch_id"]]


def test_text_that_is_not_json_is_a_400_and_another_media_type_a_415() -> None:
    with pytest.raises(HTTPException) as not_json:
        parse_listing(JSON, b"{nope", None)
    with pytest.raises(HTTPException) as other:
        parse_listing("text/csv", b"a,b", None)

    assert (not_json.value.status_code, other.value.status_code) == (400, 415)


def test_ndjson_lines_carry_users_and_their_attributes_and_blank_lines_are_ignored() -> None:
    body = as_ndjson({"user_id": "a", "attributes": {"plan": "pro"}}, {"user_id": "b"})
    body += b"\n  \n" + as_ndjson({"user_id": "a", "attributes": {"plan": "free"}})

    listed = parse_listing(f"{NDJSON}; charset=utf-8", body, "b-1")

    assert listed.users == {"a": {"plan": "pro"}, "b": {}}
    assert (listed.received, listed.duplicates) == (3, 1)


def test_an_invalid_ndjson_line_is_located_by_its_line_number() -> None:
    body = b'{"user_id": "a"}\n{"user_id": 5}\nnot json\n{"user_id": "c", "plan": "x"}\n'

    with pytest.raises(InvalidConfigError) as exc:
        parse_listing(NDJSON, body, "b-1")

    assert locs(exc) == [["body", 1, "user_id"], ["body", 2], ["body", 3, "plan"]]


def test_an_ndjson_upload_needs_a_batch_id_and_at_most_the_limit_of_lines() -> None:
    with pytest.raises(InvalidConfigError) as missing:
        parse_listing(NDJSON, as_ndjson({"user_id": "a"}), None)
    lines = as_ndjson(*({"user_id": f"u{i}"} for i in range(MAX_ENROLLMENT_USERS + 1)))
    with pytest.raises(InvalidConfigError) as too_many:
        parse_listing(NDJSON, lines, "b-1")
    with pytest.raises(InvalidConfigError) as empty:
        parse_listing(NDJSON, b"\n\n", "b-1")

    assert locs(missing) == [["query", "batch_id"]]
    assert locs(too_many) == [["body"]]
    assert locs(empty) == [["body"]]


def test_the_digest_ignores_order_but_not_users_or_attributes() -> None:
    def digest(body: bytes) -> str:
        return parse_listing(NDJSON, body, "b-1").digest()

    ab = digest(as_ndjson({"user_id": "a"}, {"user_id": "b"}))

    assert ab == digest(as_ndjson({"user_id": "b"}, {"user_id": "a"}))
    assert ab != digest(as_ndjson({"user_id": "a"}, {"user_id": "c"}))
    assert ab != digest(as_ndjson({"user_id": "a", "attributes": {"x": 1}}, {"user_id": "b"}))


async def _noop(scope: object, receive: object, send: object) -> None:
    return None


def test_only_the_enrollments_route_takes_a_body_over_one_mib() -> None:
    guard = BodyLimit(_noop, MAX_BODY, WIDER_BODIES)

    assert guard.limit(f"{API}/cfg-1/enrollments") == MAX_ENROLLMENT_BODY
    assert guard.limit(API) == MAX_BODY
    assert guard.limit(f"{API}/cfg-1/enrollments/extra") == MAX_BODY
    assert guard.limit(f"{API}/a/b/enrollments") == MAX_BODY
