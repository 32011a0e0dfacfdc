"""Signed tracking links: a link verifies only as minted, for its kind, before its expiry; a
click goes only to an http(s) URL signed into it; the events they record drive the core."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from sme.contracts.activities import ActivityType as A
from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.core.tracking_links import (
    DEFAULT_TTL,
    InvalidLinkError,
    LinkClaims,
    LinkKind,
    mint,
    tracking_event,
    tracking_links,
    verify,
)
from sme.settings import Settings
from tests.unit.builders import T0, Driver, at, config, msg_step, of_type

SECRET = b"k" * 32
OTHER = b"o" * 32
BASE = "https://t.example.com"
TARGET = "https://shop.example.com/cart?item=42&utm=mail"


def claims(**changes: object) -> LinkClaims:
    base = LinkClaims(
        LinkKind.CLICK,
        "ws-acme",
        "user-1",
        "cmd-1",
        Channel.EMAIL,
        int(at(days=1).timestamp()),
        TARGET,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def token_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[1]


def test_a_minted_link_verifies_to_its_claims() -> None:
    c = claims()
    assert verify(mint(c, SECRET), LinkKind.CLICK, SECRET, T0) == c


@pytest.mark.parametrize(
    "field, value",
    [
        ("kind", "o"),
        ("workspace_id", "ws-other"),
        ("user_id", "user-2"),
        ("command_id", "cmd-2"),
        ("channel", "sms"),
        ("expires_at", 4102444800),
        ("url", "https://evil.example.net/"),
    ],
)
def test_changing_any_field_of_the_payload_breaks_the_signature(field: str, value: object) -> None:
    body, mac = mint(claims(), SECRET).split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    index = ["kind", "workspace_id", "user_id", "command_id", "channel", "expires_at", "url"]
    payload[index.index(field) + 1] = value
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()

    with pytest.raises(InvalidLinkError, match="signature"):
        verify(f"{forged}.{mac}", LinkKind.CLICK, SECRET, T0)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "abc.", ".abc", "a.b.c", "a b.c", "x" * 5000, "%2e%2e.abc", "eyJ9.AAAA"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidLinkError):
        verify(token, LinkKind.CLICK, SECRET, T0)


def test_a_link_signed_with_another_secret_or_a_flipped_mac_is_refused() -> None:
    token = mint(claims(), OTHER)
    with pytest.raises(InvalidLinkError, match="signature"):
        verify(token, LinkKind.CLICK, SECRET, T0)
    good = mint(claims(), SECRET)
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    with pytest.raises(InvalidLinkError):
        verify(flipped, LinkKind.CLICK, SECRET, T0)


def test_a_link_is_refused_from_its_expiry_on() -> None:
    token = mint(claims(expires_at=int(at(hours=1).timestamp())), SECRET)
    verify(token, LinkKind.CLICK, SECRET, at(minutes=59))
    with pytest.raises(InvalidLinkError, match="expired"):
        verify(token, LinkKind.CLICK, SECRET, at(hours=1))


def test_a_link_of_one_kind_does_not_work_on_another_route() -> None:
    token = mint(claims(kind=LinkKind.OPEN, url=None), SECRET)
    with pytest.raises(InvalidLinkError, match="another kind"):
        verify(token, LinkKind.UNSUBSCRIBE, SECRET, T0)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "//evil.example.net/",
        "/relative",
        "ftp://files.example.com/a",
        "https://",
        "https://ok.example.com/\r\nSet-Cookie: a=b",
        "https://ok.example.com/a b",
        "https://ok.example.com/" + "a" * 2100,
    ],
)
def test_only_absolute_http_urls_can_be_click_targets(url: str) -> None:
    with pytest.raises(InvalidLinkError):
        mint(claims(url=url), SECRET)
    with pytest.raises(InvalidLinkError):
        tracking_links(command(), BASE, SECRET).click(url)


def test_only_a_click_link_carries_a_url() -> None:
    with pytest.raises(InvalidLinkError):
        mint(claims(url=None), SECRET)
    with pytest.raises(InvalidLinkError):
        mint(claims(kind=LinkKind.OPEN), SECRET)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(InvalidLinkError, match="32 bytes"):
        mint(claims(), b"short")


def command() -> Command:
    return Command(
        command_id="cmd-1",
        workspace_id="ws-acme",
        config_id="cfg-1",
        config_version=1,
        user_id="user/with spaces é",
        step_id="s1",
        channel=Channel.EMAIL,
        template="tpl-s1",
        variant="a",
        arm="adaptive",  # type: ignore[arg-type]
        decided_at=T0,
    )


def test_a_senders_links_are_stable_and_name_the_command() -> None:
    links = tracking_links(command(), BASE + "/", SECRET.decode())
    again = tracking_links(command(), BASE, SECRET)

    assert links.open_pixel() == again.open_pixel()  # a redelivered command renders the same
    assert links.open_pixel().startswith(f"{BASE}/t/o/")
    assert links.unsubscribe().startswith(f"{BASE}/t/u/")
    click = verify(token_of(links.click(TARGET)), LinkKind.CLICK, SECRET, T0)
    assert (click.user_id, click.command_id, click.url) == ("user/with spaces é", "cmd-1", TARGET)
    assert click.expires_at == int((T0 + DEFAULT_TTL).timestamp())
    assert tracking_links(command(), BASE, SECRET, timedelta(days=1)).open_pixel() != (
        links.open_pixel()
    )


def test_repeated_hits_of_one_link_kind_make_the_same_event_id() -> None:
    first = tracking_event(claims(), T0)
    again = tracking_event(claims(url="https://other.example.com/"), at(hours=1))
    opened = tracking_event(claims(kind=LinkKind.OPEN, url=None), T0)

    assert first.event_id == again.event_id != opened.event_id
    assert (first.type, first.command_id, first.channel) == ("clicked", "cmd-1", Channel.EMAIL)
    assert first.properties == {"source": "tracking", "url": TARGET}


def test_tracked_open_click_and_unsubscribe_reach_the_sent_message_and_stop_the_channel() -> None:
    cfg = config(steps=[msg_step("s1"), msg_step("s2", channels=["email", "sms"], wait="P1D")])
    d = Driver.of(cfg)
    d.send("signed_up")
    sent = d.commands[0]
    expires = int(at(days=30).timestamp())

    def hit(kind: LinkKind, url: str | None = None, **when: float) -> None:
        c = LinkClaims(kind, sent.workspace_id, sent.user_id, sent.command_id, sent.channel,
                       expires, url)  # fmt: skip
        d.feed(tracking_event(verify(mint(c, SECRET), kind, SECRET, at(**when)), at(**when)))

    hit(LinkKind.OPEN, minutes=5)
    hit(LinkKind.OPEN, minutes=6)  # a second open of the same message: a duplicate
    hit(LinkKind.CLICK, TARGET, minutes=7)
    hit(LinkKind.UNSUBSCRIBE, minutes=8)
    d.run_until(at(days=2))

    feedback = of_type(d.activities, A.FEEDBACK)
    assert [(f.step_id, f.command_id) for f in feedback] == [("s1", sent.command_id)] * 3
    assert len(of_type(d.activities, A.EVENT_DUPLICATE)) == 1
    assert len(of_type(d.activities, A.CONSENT_REVOKED)) == 1
    assert [c.channel for c in d.commands] == [Channel.EMAIL, Channel.SMS]


def test_the_readme_tracking_example_mints_links_that_verify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Tracking\n", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's Tracking section shows a Python example"
    monkeypatch.setenv("SME_TRACKING_SECRET", SECRET.decode())
    scope: dict[str, Any] = {"record_value": command().model_dump_json().encode()}

    exec(compile(block.group(1), "README.md", "exec"), scope)  # noqa: S102 - our own README

    hrefs = re.findall(r'(?:href|src)="([^"]+)"', scope["html"])
    kinds = [LinkKind(urlsplit(h).path.split("/")[2]) for h in hrefs]
    assert kinds == [LinkKind.CLICK, LinkKind.UNSUBSCRIBE, LinkKind.OPEN]
    click = verify(token_of(hrefs[0]), LinkKind.CLICK, SECRET, T0)
    assert click.url == "https://shop.example.com/cart"
    assert scope["headers"]["List-Unsubscribe"] == f"<{hrefs[1]}>"


def test_the_tracking_secret_setting_is_at_least_32_bytes_and_empty_means_unset() -> None:
    assert Settings(tracking_secret="").tracking_secret is None
    assert Settings(tracking_secret="é" * 16).tracking_secret is not None  # 32 bytes in UTF-8
    with pytest.raises(ValidationError, match="32 bytes"):
        Settings(tracking_secret="x" * 31)
    with pytest.raises(ValidationError, match="32 bytes"):
        Settings(tracking_previous_secret="x" * 31)
