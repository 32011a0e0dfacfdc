"""The SMTP sender's pure parts: rendering (data, escaping, strictness, sandbox), template ids
that cannot leave the directory, the headers (List-Unsubscribe, Message-ID), and how SMTP
replies and rendering failures become outcomes."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.content import CommandData
from sme.contracts.reasons import DeliveryFailure
from sme.core.tracking_links import LinkKind, TrackingLinks, tracking_links, verify
from sme.senders.email_render import (
    EmailIdentity,
    EmailRenderer,
    RenderError,
    checked_template_id,
    message_id,
)
from sme.senders.main import smtp_sender
from sme.senders.outcome import Attempt, Final, Verdict, feedback_event
from sme.senders.smtp import SmtpAdapter, SmtpServer, classify_smtp
from sme.settings import Settings

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SECRET = b"unit-test-tracking-secret-0123456789abcdef"
IDENTITY = EmailIdentity("Acme <news@acme.example>", "unsubscribe@acme.example")


def command(
    template: str = "welcome",
    attributes: dict[str, object] | None = None,
    command_id: str = "c-1",
) -> Command:
    attrs = {"email": "ada@example.com", "first_name": "Ada"} if attributes is None else attributes
    return Command(
        command_id=command_id,
        workspace_id="ws",
        config_id="welcome",
        config_version=1,
        user_id="u-1",
        step_id="s1",
        channel=Channel.EMAIL,
        template=template,
        variant="a",
        arm=Arm.ADAPTIVE,
        decided_at=NOW,
        data=CommandData.model_validate({"attributes": attrs, "event": {"plan": "pro"}}),
    )


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    (d / "welcome.subject.txt").write_text("Welcome, {{ attributes.first_name }}!\n")
    (d / "welcome.txt").write_text("Hi {{ attributes.first_name }}, plan {{ event.plan }}.\n")
    (d / "welcome.html").write_text(
        '<html><body><p>Hi {{ attributes.first_name }}</p><a href="{{ track('
        "'https://acme.example/start') }}\">Start</a>"
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'
    )
    (d / "html_only.subject.txt").write_text("For {{ attributes.first_name }}")
    (d / "html_only.html").write_text("<p>{{ attributes.first_name }}</p>")
    (d / "typo.subject.txt").write_text("Hi {{ attributes.frist_name }}")
    (d / "typo.txt").write_text("x")
    (d / "fallback.subject.txt").write_text("Hi {{ attributes.nickname | default('there') }}")
    (d / "fallback.txt").write_text("x")
    (d / "escape.subject.txt").write_text("{{ attributes.first_name }}\r\nBcc: evil@x.example")
    (d / "escape.html").write_text("<p>{{ attributes.first_name }}</p>")
    (d / "escape.txt").write_text("{{ attributes.first_name }}")
    (d / "sandbox.subject.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    (d / "sandbox.txt").write_text("x")
    (d / "no_body.subject.txt").write_text("x")
    (tmp_path / "secret.subject.txt").write_text("outside")
    (tmp_path / "secret.txt").write_text("outside")
    return d


def render(templates: Path, cmd: Command, *, tracked: bool = False) -> EmailMessage:
    links = tracking_links(cmd, "https://t.acme.example", SECRET) if tracked else None
    return EmailRenderer(templates, IDENTITY).render(cmd, "email", links, NOW)


def failure(templates: Path, cmd: Command) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render(templates, cmd)
    return caught.value


def bodies(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_subtype(): part.get_content() for part in message.walk()
            if part.get_content_maintype() == "text"}  # fmt: skip


def test_a_message_is_rendered_with_the_commands_data(templates: Path) -> None:
    message = render(templates, command())
    assert message["Subject"] == "Welcome, Ada!"
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Acme <news@acme.example>"
    assert message.get_content_type() == "multipart/alternative"
    parts = bodies(message)
    assert parts["plain"] == "Hi Ada, plan pro.\n"
    assert '<a href="https://acme.example/start">Start</a>' in parts["html"]


def test_html_is_autoescaped_and_the_subject_cannot_inject_headers(templates: Path) -> None:
    hostile = "<script>x</script>"
    message = render(templates, command("escape", {"email": "a@b.example", "first_name": hostile}))
    parts = bodies(message)
    assert "&lt;script&gt;" in parts["html"] and "<script>" not in parts["html"]
    assert parts["plain"].strip() == hostile  # plain text is not HTML
    assert message["Subject"] == f"{hostile} Bcc: evil@x.example"
    assert message["Bcc"] is None


def test_headers_carry_a_stable_message_id_and_one_click_unsubscribe(templates: Path) -> None:
    message = render(templates, command(), tracked=True)
    again = render(templates, command(), tracked=True)
    assert message["Message-ID"] == again["Message-ID"] == message_id("c-1", "acme.example")
    assert message["Message-ID"] != render(templates, command(command_id="c-2"))["Message-ID"]
    assert message["X-SME-Command-Id"] == "c-1"
    https, mailto = (t.strip(" <>") for t in message["List-Unsubscribe"].split(","))
    assert mailto == "mailto:unsubscribe@acme.example?subject=unsubscribe"
    claims = verify(https.rpartition("/")[2], LinkKind.UNSUBSCRIBE, SECRET, NOW)
    assert (claims.command_id, claims.channel) == ("c-1", Channel.EMAIL)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = bodies(message)["html"]
    assert f'href="{https}"' in html
    assert '<img src="https://t.acme.example/t/o/' in html
    assert html.index("<img") < html.index("</body>")
    click = html.split('href="')[1].split('"')[0]
    assert click.startswith("https://t.acme.example/t/c/")
    assert verify(click.rpartition("/")[2], LinkKind.CLICK, SECRET, NOW).url == (
        "https://acme.example/start"
    )


def test_without_tracking_links_stay_plain_and_only_the_mailto_unsubscribe_is_offered(
    templates: Path,
) -> None:
    message = render(templates, command())
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@acme.example?subject=unsubscribe>"
    assert message["List-Unsubscribe-Post"] is None
    assert "<img" not in bodies(message)["html"]
    bare = EmailRenderer(templates, EmailIdentity("news@acme.example"))
    assert bare.render(command(), "email", None, NOW)["List-Unsubscribe"] is None


def test_an_html_only_template_makes_a_single_html_part(templates: Path) -> None:
    message = render(templates, command("html_only"))
    assert message.get_content_type() == "text/html"
    assert message["Subject"] == "For Ada"


@pytest.mark.parametrize(
    "template",
    [
        "../secret",
        "/etc/passwd",
        "a/../../secret",
        ".hidden",
        "a//b",
        "a\\b",
        "a..b",
        "",
        "x" * 201,
    ],
)
def test_template_ids_that_could_leave_the_directory_are_refused(
    templates: Path, template: str
) -> None:
    with pytest.raises(RenderError) as caught:
        checked_template_id(template)
    assert caught.value.failure is DeliveryFailure.TEMPLATE_ERROR
    if template:
        assert failure(templates, command(template)).failure is DeliveryFailure.TEMPLATE_ERROR


def test_safe_nested_ids_are_accepted() -> None:
    assert checked_template_id("onboarding/day-1.v2") == "onboarding/day-1.v2"


@pytest.mark.parametrize(
    ("template", "detail"),
    [
        ("missing", "no template missing.subject.txt"),
        ("no_body", "no no_body.html nor no_body.txt"),
        ("typo", "frist_name"),
        ("sandbox", "SecurityError"),
    ],
)
def test_templates_that_do_not_render_are_template_errors(
    templates: Path, template: str, detail: str
) -> None:
    error = failure(templates, command(template))
    assert error.failure is DeliveryFailure.TEMPLATE_ERROR
    assert detail in error.detail


def test_a_default_filter_renders_a_fallback_for_a_missing_value(templates: Path) -> None:
    assert render(templates, command("fallback"))["Subject"] == "Hi there"


@pytest.mark.parametrize(
    "attributes",
    [{}, {"email": ""}, {"email": 42}, {"email": "no-at-sign"}, {"email": "a@b.example\r\nBcc: x"},
     {"email": "Eve <eve@x.example>"}, {"email": "a b@x.example"}],
)  # fmt: skip
def test_a_command_without_a_plain_address_is_no_address(
    templates: Path, attributes: dict[str, object]
) -> None:
    assert failure(templates, command(attributes=attributes)).failure is DeliveryFailure.NO_ADDRESS


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (250, Verdict.DELIVERED),
        (421, Verdict.RETRYABLE),
        (451, Verdict.RETRYABLE),
        (452, Verdict.RETRYABLE),
        (550, Verdict.REJECTED),
        (554, Verdict.REJECTED),
        (-1, Verdict.REJECTED),
    ],
)
def test_smtp_replies_map_to_outcomes(code: int, verdict: Verdict) -> None:
    attempt = classify_smtp(code, "mailbox\r\n unavailable")
    assert attempt.verdict is verdict
    assert attempt.status == code
    assert attempt.detail == f"smtp {code} mailbox unavailable"


def test_a_rendering_failure_bounces_with_its_own_reason_and_a_5xx_with_rejected() -> None:
    cmd = command()
    no_address = Final(Attempt(Verdict.REJECTED, "x", None, DeliveryFailure.NO_ADDRESS), 1)
    event = feedback_event(cmd, no_address, "smtp", NOW)
    assert event is not None and event.type == "bounced"
    assert event.properties["reason"] == "no_address"
    event = feedback_event(cmd, Final(classify_smtp(550, "no such user"), 1), "smtp", NOW)
    assert event is not None
    assert (event.properties["reason"], event.properties["status"]) == ("rejected", 550)


async def test_the_adapter_bounces_unrenderable_commands_and_retries_a_dead_server(
    templates: Path,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = SmtpAdapter(
        EmailRenderer(templates, IDENTITY), SmtpServer("127.0.0.1", port, "none"), timeout_s=5
    )
    attempt = await adapter.deliver(command(attributes={}))
    assert (attempt.verdict, attempt.failure) == (Verdict.REJECTED, DeliveryFailure.NO_ADDRESS)
    attempt = await adapter.deliver(command("missing"))
    assert (attempt.verdict, attempt.failure) == (Verdict.REJECTED, DeliveryFailure.TEMPLATE_ERROR)
    attempt = await adapter.deliver(command())
    assert attempt.verdict is Verdict.RETRYABLE
    assert attempt.detail.startswith("connection failed")
    await adapter.aclose()


def test_the_smtp_sender_needs_templates_and_a_from_address(templates: Path) -> None:
    with pytest.raises(ValueError, match="SME_SENDER_SMTP_TEMPLATES_DIR"):
        smtp_sender(Settings(sender_smtp_from="news@acme.example"))
    with pytest.raises(ValueError, match="SME_SENDER_SMTP_FROM"):
        smtp_sender(Settings(sender_smtp_templates_dir=templates))
    with pytest.raises(ValueError, match="does not exist"):
        smtp_sender(Settings(sender_smtp_from="n@a.example"), templates / "nope")
    with pytest.raises(ValueError, match="SME_TRACKING_SECRET"):
        smtp_sender(
            Settings(
                sender_smtp_from="n@a.example",
                sender_smtp_templates_dir=templates,
                sender_tracking_base_url="https://t.a.example",
            )
        )
    sender = smtp_sender(
        Settings(sender_smtp_from="n@a.example", sender_smtp_templates_dir=templates)
    )
    assert (sender.channel, sender.group_id) == (Channel.EMAIL, "sme-sender-smtp-email")


async def test_an_unexpected_rendering_failure_bounces_instead_of_stopping_the_sender(
    templates: Path,
) -> None:
    def broken_links(cmd: Command) -> TrackingLinks:
        raise RuntimeError("boom")

    adapter = SmtpAdapter(
        EmailRenderer(templates, IDENTITY),
        SmtpServer("127.0.0.1", 1, "none"),
        timeout_s=5,
        links=broken_links,
    )
    attempt = await adapter.deliver(command())
    assert (attempt.verdict, attempt.failure) == (Verdict.REJECTED, DeliveryFailure.TEMPLATE_ERROR)
    assert attempt.detail == "render: RuntimeError: boom"
