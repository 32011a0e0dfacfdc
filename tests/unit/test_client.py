"""The Python client against scripted answers (httpx.MockTransport): each refusal becomes its
typed error with the server's details, and only calls safe to repeat are repeated, boundedly."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from sme.client import (
    AsyncSmeClient,
    Conflict,
    GatewayUnreachable,
    InvalidRequest,
    NotFound,
    RateLimited,
    SmeClient,
    Unauthorized,
    Unavailable,
)
from sme.client.calls import retry_after
from sme.contracts.preview import PreviewRequest
from tests.unit.builders import config

Handler = Callable[[httpx.Request], httpx.Response]
BASE = "http://gateway.test"


class Recorder:
    """A scripted gateway: answers in order (the last one repeats), requests and waits kept."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[min(len(self.requests), len(self.answers)) - 1]

    def client(self, **options: float) -> SmeClient:
        return SmeClient(
            BASE,
            "secret-key",
            transport=httpx.MockTransport(self),
            sleep=self.waits.append,
            **options,  # type: ignore[arg-type]
        )


def answer(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body), headers=headers)


def stored() -> dict[str, object]:
    return config().model_dump(mode="json")


def test_a_422_carries_every_field_error_with_its_location() -> None:
    errors = [
        {"loc": ["body", "steps", 0, "channels"], "msg": "at least one", "type": "too_short"},
        {"loc": ["body", "name"], "msg": "Field required", "type": "missing"},
    ]
    gateway = Recorder(answer(422, {"detail": errors}))
    with pytest.raises(InvalidRequest) as refused:
        gateway.client().create_config({"workspace_id": "acme"})
    assert refused.value.status == 422
    assert refused.value.errors == errors
    assert "body.steps.0.channels: at least one" in str(refused.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, InvalidRequest), (401, Unauthorized), (403, Unauthorized), (404, NotFound),
     (409, Conflict), (413, InvalidRequest)],
)  # fmt: skip
def test_each_refusal_is_its_own_error_with_the_server_message(
    status: int, kind: type[Exception]
) -> None:
    gateway = Recorder(answer(status, {"detail": "the server says why"}))
    with pytest.raises(kind) as refused:
        gateway.client().get_config("c1")
    assert str(refused.value) == f"{status} the server says why"
    assert len(gateway.requests) == 1


def test_requests_carry_the_key_escaped_ids_and_the_version_check() -> None:
    gateway = Recorder(answer(200, stored()))
    with gateway.client() as client:
        patched = client.patch_config("a/b?c", {"name": "Renamed"}, if_version=3)
    sent = gateway.requests[0]
    assert sent.headers["Authorization"] == "Bearer secret-key"
    assert sent.headers["If-Match"] == '"3"'
    assert sent.url.raw_path == b"/api/v1/035-sequential-messaging-engine/a%2Fb%3Fc"
    assert orjson.loads(sent.content) == {"name": "Renamed"}
    assert patched == config()


def test_an_idempotent_call_waits_as_told_and_tries_again() -> None:
    gateway = Recorder(
        answer(429, {"detail": "slow down"}, **{"Retry-After": "2"}),
        answer(503, {"detail": "broker down"}, **{"Retry-After": "5"}),
        answer(200, stored()),
    )
    assert gateway.client().get_config("c1") == config()
    assert gateway.waits == [2.0, 5.0]
    assert len(gateway.requests) == 3


def test_retries_are_bounded() -> None:
    gateway = Recorder(answer(503, {"detail": "down"}, **{"Retry-After": "1"}))
    with pytest.raises(Unavailable) as refused:
        gateway.client(max_retries=2).get_workspace("acme")
    assert refused.value.retry_after == 1.0
    assert len(gateway.requests) == 3
    assert gateway.waits == [1.0, 1.0]


@pytest.mark.parametrize(
    ("headers", "max_retry_wait"),
    [({}, 30.0), ({"Retry-After": "60"}, 30.0), ({"Retry-After": "soon"}, 30.0)],
)
def test_no_retry_without_usable_advice(headers: dict[str, str], max_retry_wait: float) -> None:
    gateway = Recorder(answer(429, {"detail": "later"}, **headers))
    with pytest.raises(RateLimited):
        gateway.client(max_retry_wait=max_retry_wait).metrics("c1")
    assert len(gateway.requests) == 1
    assert gateway.waits == []


def test_a_call_that_could_act_twice_is_never_repeated() -> None:
    gateway = Recorder(answer(503, {"detail": "down"}, **{"Retry-After": "1"}))
    with pytest.raises(Unavailable) as refused:
        gateway.client().create_config({"workspace_id": "acme"})
    assert refused.value.retry_after == 1.0
    with pytest.raises(Unavailable):
        gateway.client().patch_config("c1", {"name": "x"})
    assert len(gateway.requests) == 2
    assert gateway.waits == []


def test_an_enrollment_batch_is_repeated_since_its_id_makes_it_idempotent() -> None:
    accepted = {
        "batch_id": "b1",
        "config_id": "c1",
        "received": 1,
        "accepted": 1,
        "duplicates": 0,
        "replayed": True,
        "accepted_at": "2026-03-04T10:00:00Z",
    }
    gateway = Recorder(answer(429, {"detail": "x"}, **{"Retry-After": "0"}), answer(202, accepted))
    assert gateway.client().enroll("c1", "b1", ["u1"]).replayed
    assert [orjson.loads(r.content) for r in gateway.requests] == [
        {"batch_id": "b1", "user_ids": ["u1"]}
    ] * 2


def test_retry_after_as_an_http_date() -> None:
    response = httpx.Response(503, headers={"Retry-After": "Wed, 04 Mar 2026 10:00:30 GMT"})
    assert retry_after(response, datetime(2026, 3, 4, 10, 0, tzinfo=UTC)) == 30.0
    assert retry_after(response, datetime(2026, 3, 4, 11, 0, tzinfo=UTC)) == 0.0


def test_no_answer_is_gateway_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = SmeClient(BASE, transport=httpx.MockTransport(refuse))
    with pytest.raises(GatewayUnreachable, match="did not answer"):
        client.sql("SELECT 1")
    assert "Authorization" not in client._http.headers


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        SmeClient("file:///etc/passwd")


async def test_the_async_client_maps_and_retries_the_same_way() -> None:
    gateway = Recorder(
        answer(429, {"detail": "x"}, **{"Retry-After": "1"}),
        answer(404, {"detail": "no such sequence"}),
    )
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncSmeClient(BASE, "k", transport=httpx.MockTransport(gateway), sleep=sleep) as c:
        with pytest.raises(NotFound, match="no such sequence"):
            await c.preview("c1", PreviewRequest(user_id="anna"))
    assert waits == [1.0]
    assert gateway.requests[0].url.path.endswith("/c1/preview")
    assert orjson.loads(gateway.requests[0].content) == {"user_id": "anna"}


def test_the_sync_client_offers_every_call_of_the_async_one() -> None:
    def calls(kind: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(kind).items()
            if inspect.isfunction(member) and not name.startswith("_")
        }

    async_calls = calls(AsyncSmeClient)
    sync_calls = calls(SmeClient)
    async_calls["close"] = async_calls.pop("aclose")
    assert {n: str(s) for n, s in sync_calls.items()} == {
        n: str(s).replace("AsyncBaseTransport", "BaseTransport").replace("Awaitable[None]", "None")
        for n, s in async_calls.items()
    }


def test_a_gateway_not_ready_is_an_answer_not_an_error() -> None:
    gateway = Recorder(answer(503, {"detail": "starting"}), answer(200, "ok"))
    client = gateway.client()
    assert not client.ready()
    assert client.ready()
    assert [r.url.path for r in gateway.requests] == ["/readyz", "/readyz"]
