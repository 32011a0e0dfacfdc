"""`sme sender smtp` on the real broker against a local aiosmtpd server started by the test:
a command is rendered with its data and sent with the unsubscribe headers and a Message-ID
from its command id; a 550 is bounced (rejected, with the reply), a 451 is retried and then
delivered, a command without an address or with a broken template bounces at once with its
own reason; and the README's copy-paste example runs as written, as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.content import CommandData
from sme.core.tracking_links import LinkKind, verify
from sme.senders.email_render import message_id
from sme.senders.main import smtp_sender
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.conftest import unique_topic_env
from tests.support.kafka_io import TopicReader, publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
SERVICES = README.parent / "services"
TRACKING_SECRET = "integration-tracking-secret-0123456789abcdef"


class Mailbox:
    """An SMTP server's handler: `nobody@` refused (550), `flaky@` deferred once (451)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: Counter[str] = Counter()

    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.recipients[address] += 1
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("flaky@") and self.recipients[address] == 1:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox) -> Iterator[int]:
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def command_value(command_id: str, template: str, attributes: dict[str, Any]) -> bytes:
    return (
        Command(
            command_id=command_id,
            workspace_id="ws",
            config_id="welcome",
            config_version=1,
            user_id=f"user-{command_id}",
            step_id="s1",
            channel=Channel.EMAIL,
            template=template,
            variant="a",
            arm=Arm.ADAPTIVE,
            decided_at=datetime.now(tz=UTC),
            data=CommandData.model_validate({"attributes": attributes, "event": {"plan": "pro"}}),
        )
        .model_dump_json()
        .encode()
    )


def feedback(seen: list[dict[str, Any]], command_id: str) -> list[dict[str, Any]]:
    return [e for e in seen if e.get("command_id") == command_id]


def write_templates(directory: Path) -> None:
    directory.mkdir()
    (directory / "welcome.subject.txt").write_text("Welcome, {{ attributes.first_name }}!")
    (directory / "welcome.txt").write_text(
        "Hi {{ attributes.first_name }} ({{ event.plan }}): {{ track('https://acme.example/go') }}"
    )
    (directory / "welcome.html").write_text(
        "<html><body><p>Hi {{ attributes.first_name }}</p></body></html>"
    )
    (directory / "broken.subject.txt").write_text("{{ attributes.missing_name }}")
    (directory / "broken.txt").write_text("x")


async def test_smtp_sender_renders_sends_bounces_and_retries(kafka: str, tmp_path: Path) -> None:
    env = unique_topic_env("smtp")
    fields = {k.removeprefix("SME_").lower(): v for k, v in env.items()}
    templates = tmp_path / "templates"
    write_templates(templates)
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        settings = Settings(
            kafka_bootstrap_servers=kafka,
            data_dir=tmp_path,
            topic_partitions=2,
            sender_smtp_port=port,
            sender_smtp_tls="none",
            sender_smtp_from="Acme <news@acme.example>",
            sender_smtp_templates_dir=templates,
            sender_smtp_unsubscribe_mailto="unsubscribe@acme.example",
            tracking_secret=TRACKING_SECRET,
            sender_tracking_base_url="https://t.acme.example",
            sender_max_attempts=3,
            sender_backoff_base_seconds=0.05,
            sender_group_prefix=f"{env['SME_ENGINE_APP_ID']}-sender",
            **fields,
        )
        await ensure_topics(settings)
        sender = asyncio.create_task(smtp_sender(settings).run())
        ids = ("ok-1", "bounce-1", "flaky-1", "noaddr-1", "broken-1")
        try:
            async with TopicReader(kafka, settings.topic_events) as events:
                await publish(
                    kafka,
                    settings.command_topic(Channel.EMAIL),
                    [
                        (b"k1", command_value("ok-1", "welcome", {"email": "ada@example.com",
                                                                 "first_name": "Ada"})),
                        (b"k2", command_value("bounce-1", "welcome", {"email": "nobody@x.example",
                                                                     "first_name": "No"})),
                        (b"k3", command_value("flaky-1", "welcome", {"email": "flaky@x.example",
                                                                    "first_name": "Fl"})),
                        (b"k4", command_value("noaddr-1", "welcome", {"first_name": "Nemo"})),
                        (b"k5", command_value("broken-1", "broken", {"email": "b@x.example"})),
                    ],
                )  # fmt: skip

                async def outcomes() -> list[dict[str, Any]] | None:
                    seen = await events.poll()
                    return seen if all(feedback(seen, c) for c in ids) else None

                seen = await eventually(outcomes, 60, what="an outcome per command")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    by_id = {c: feedback(seen, c) for c in ids}
    assert all(len(events) == 1 for events in by_id.values()), by_id
    ok, bounce, flaky, noaddr, broken = (by_id[c][0] for c in ids)

    assert (ok["type"], ok["channel"], ok["user_id"]) == ("delivered", "email", "user-ok-1")
    [message] = mailbox.to("ada@example.com")
    assert message["Subject"] == "Welcome, Ada!"
    assert message["From"] == "Acme <news@acme.example>"
    assert message["Message-ID"] == message_id("ok-1", "acme.example")
    assert message["X-SME-Command-Id"] == "ok-1"
    unsubscribe, mailto = (t.strip(" <>") for t in message["List-Unsubscribe"].split(","))
    assert mailto == "mailto:unsubscribe@acme.example?subject=unsubscribe"
    assert unsubscribe.startswith("https://t.acme.example/t/u/")
    now = datetime.now(tz=UTC)
    claims = verify(
        unsubscribe.rpartition("/")[2], LinkKind.UNSUBSCRIBE, TRACKING_SECRET.encode(), now
    )
    assert (claims.command_id, claims.user_id) == ("ok-1", "user-ok-1")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    click = re.search(r"https://t\.acme\.example/t/c/\S+", text.get_content())
    assert text.get_content().startswith("Hi Ada (pro): ") and click
    target = verify(
        click.group(0).rpartition("/")[2], LinkKind.CLICK, TRACKING_SECRET.encode(), now
    )
    assert target.url == "https://acme.example/go"
    assert "<p>Hi Ada</p>" in html.get_content()
    assert '<img src="https://t.acme.example/t/o/' in html.get_content()

    assert bounce["type"] == "bounced"
    assert bounce["properties"]["reason"] == "rejected"
    assert bounce["properties"]["status"] == 550
    assert bounce["properties"]["attempts"] == 1
    assert "no such user" in bounce["properties"]["detail"]
    assert mailbox.recipients["nobody@x.example"] == 1

    assert (flaky["type"], flaky["properties"]["attempts"]) == ("delivered", 2)
    assert mailbox.recipients["flaky@x.example"] == 2
    assert len(mailbox.to("flaky@x.example")) == 1

    assert (noaddr["type"], noaddr["properties"]["reason"]) == ("bounced", "no_address")
    assert (broken["type"], broken["properties"]["reason"]) == ("bounced", "template_error")
    assert "missing_name" in broken["properties"]["detail"]
    assert (noaddr["properties"]["attempts"], broken["properties"]["attempts"]) == (1, 1)
    assert mailbox.recipients["b@x.example"] == 0
    assert len(mailbox.messages) == 2


def readme_smtp_example() -> tuple[str, dict[str, Any]]:
    """The README's SMTP example: the shell block and the command, exactly as written."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### `smtp`") :]
    shell = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    command = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert shell and command, "the README's smtp part has a bash block and a command"
    return shell.group(1), orjson.loads(command.group(1))


async def test_the_readmes_smtp_example_sends_its_command_as_written(
    kafka: str, tmp_path: Path
) -> None:
    script, command = readme_smtp_example()
    assert script.rstrip().endswith("sme sender smtp")
    env = unique_topic_env("smtpr")
    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        # `sme` is the installed entry point; here it runs from the source tree, and the
        # relay the example names (port 1025) is the test's server on a free port.
        shim = f'sme() {{ exec env SME_SENDER_SMTP_PORT={port} "{sys.executable}" -m sme "$@"; }}\n'
        child = await asyncio.create_subprocess_exec(
            "bash",
            "-euc",
            shim + script,
            cwd=tmp_path,
            env={
                **os.environ,
                **env,
                "SME_KAFKA_BOOTSTRAP_SERVERS": kafka,
                "SME_DATA_DIR": str(tmp_path / "data"),
                "SME_TOPIC_PARTITIONS": "1",
                "SME_SENDER_GROUP_PREFIX": f"{env['SME_ENGINE_APP_ID']}-sender",
                "PYTHONPATH": str(SERVICES),
                "SME_LOG_LEVEL": "WARNING",
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            settings = Settings(
                kafka_bootstrap_servers=kafka,
                topic_partitions=1,
                **{k.removeprefix("SME_").lower(): v for k, v in env.items()},
            )
            assert child.stdout is not None
            started = await asyncio.wait_for(child.stdout.readline(), 60)
            assert started.startswith(b"sme sender smtp:"), started
            async with TopicReader(kafka, settings.topic_events) as events:
                await publish(
                    kafka,
                    settings.command_topic(Channel.EMAIL),
                    [(command["user_id"].encode(), orjson.dumps(command))],
                )

                async def delivered() -> list[dict[str, Any]]:
                    return feedback(await events.poll(), command["command_id"])

                [outcome] = await eventually(delivered, 60, what="the example's outcome")
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, stderr.decode()
    assert outcome["type"] == "delivered"
    [message] = mailbox.messages
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Welcome, Ada!"
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@acme.example?subject=unsubscribe>"
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert text.get_content().startswith("Hi Ada, your pro plan is ready.")
    assert (tmp_path / "templates" / "welcome_email.html").is_file()
