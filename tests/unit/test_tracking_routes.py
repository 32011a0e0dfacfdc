"""The tracking routes' refusals without a broker: the gateway state is a fake that records
what would be published, so a refusal is seen to publish nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sme.contracts.channels import Channel
from sme.core.tracking_links import LinkClaims, LinkKind, mint
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.tracking_api import router
from sme.settings import Settings

SECRET = "s" * 32


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, key, value))


def client(**settings: object) -> tuple[httpx.AsyncClient, FakeProducer, GatewayMetrics]:
    app = FastAPI()
    app.include_router(router)
    producer = FakeProducer()
    metrics = GatewayMetrics(CollectorRegistry())
    app.state.gw = SimpleNamespace(
        settings=Settings(**settings), producer=producer, metrics=metrics
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway")
    return http, producer, metrics


def path(kind: LinkKind, url: str | None = None, *, workspace: str = "acme") -> str:
    expires = int((datetime.now(UTC) + timedelta(days=1)).timestamp())
    claims = LinkClaims(kind, workspace, "u1", "cmd-1", Channel.EMAIL, expires, url)
    return f"/t/{kind.value}/{mint(claims, SECRET.encode())}"


def hits(metrics: GatewayMetrics, kind: str, outcome: str) -> float | None:
    labels = {"kind": kind, "outcome": outcome}
    return metrics.registry.get_sample_value("sme_tracking_hits_total", labels)


async def test_past_the_workspace_burst_a_hit_gets_429_with_retry_after_and_records_nothing() -> (
    None
):
    http, producer, metrics = client(
        tracking_secret=SecretStr(SECRET), tracking_burst=2, tracking_rate_per_second=0.01
    )
    pixel = path(LinkKind.OPEN)

    assert [(await http.get(pixel)).status_code for _ in range(2)] == [200, 200]
    limited = await http.get(pixel)
    other_workspace = await http.get(path(LinkKind.OPEN, workspace="other"))

    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert other_workspace.status_code == 200
    assert len(producer.sent) == 3
    assert hits(metrics, "open", "limited") == 1


async def test_a_refused_link_publishes_nothing_and_is_counted() -> None:
    http, producer, metrics = client(tracking_secret=SecretStr(SECRET))
    token = path(LinkKind.CLICK, "https://shop.example.com/").rsplit("/", 1)[1]

    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await http.get(f"/t/c/{altered}")).status_code == 404
    assert (await http.post(f"/t/u/{token}")).status_code == 404  # a click token cannot unsubscribe
    assert producer.sent == []
    assert hits(metrics, "click", "refused") == 1
    assert hits(metrics, "unsubscribe", "refused") == 1


async def test_the_unsubscribe_page_records_nothing_until_its_form_is_posted() -> None:
    http, producer, _ = client(tracking_secret=SecretStr(SECRET))
    link = path(LinkKind.UNSUBSCRIBE)

    page = await http.get(link)
    assert page.status_code == 200
    assert producer.sent == []
    assert (await http.post(link, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    ((topic, key, value),) = producer.sent
    assert (topic, key) == ("sme.events", b"u1")
    assert b'"type":"unsubscribed"' in value
    assert b'"channel":"email"' in value


async def test_after_a_rotation_links_of_the_previous_secret_still_work() -> None:
    old_link = path(LinkKind.OPEN)  # minted with SECRET
    http, producer, _ = client(
        tracking_secret=SecretStr("n" * 32), tracking_previous_secret=SecretStr(SECRET)
    )
    unrotated, _, _ = client(tracking_secret=SecretStr("n" * 32))

    assert (await http.get(old_link)).status_code == 200
    assert (await unrotated.get(old_link)).status_code == 404
    assert len(producer.sent) == 1
