"""Process entry of `sme sender webhook` and `sme sender smtp`: settings checked, topics
ensured, then the loop until SIGINT/SIGTERM (a stop cancels the loop; uncommitted commands
are redelivered)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.core.tracking_links import TrackingLinks, tracking_links
from sme.senders.email_render import EmailIdentity, EmailRenderer
from sme.senders.runner import Sender
from sme.senders.smtp import SmtpAdapter, SmtpServer
from sme.senders.webhook import WebhookAdapter
from sme.settings import Settings
from sme.topics import ensure_topics

log = logging.getLogger(__name__)


def webhook_sender(settings: Settings, channel: Channel, url: str | None = None) -> Sender:
    """The webhook sender for `channel`; raises ValueError naming the missing setting."""
    target = url or settings.sender_webhook_urls.get(channel)
    if target is None:
        raise ValueError(
            f"no webhook URL for channel {channel.value}: pass --url or set "
            f'SME_SENDER_WEBHOOK_URLS=\'{{"{channel.value}": "https://…"}}\''
        )
    secret = settings.sender_webhook_secret.get_secret_value().encode("utf-8")
    adapter = WebhookAdapter(str(target), secret, settings.sender_timeout_seconds)
    return Sender(settings, channel, adapter)


async def _serve(sender: Sender) -> None:
    await ensure_topics(sender.settings)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    print(
        f"sme sender {sender.adapter.kind}: {sender.settings.command_topic(sender.channel)} "
        f"-> outcomes on {sender.settings.topic_events} (group {sender.group_id})",
        flush=True,
    )
    try:
        await sender.run()
    except asyncio.CancelledError:
        return


def run_webhook_sender(settings: Settings, channel: Channel, url: str | None) -> int:
    try:
        sender = webhook_sender(settings, channel, url)
    except ValueError as exc:
        print(f"sme: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(sender))
    return 0


def smtp_sender(settings: Settings, templates_dir: Path | None = None) -> Sender:
    """The SMTP sender of the email channel; raises ValueError naming the missing setting."""
    directory = templates_dir or settings.sender_smtp_templates_dir
    if directory is None:
        raise ValueError(
            "no email templates: pass --templates or set SME_SENDER_SMTP_TEMPLATES_DIR"
        )
    identity = EmailIdentity(settings.sender_smtp_from, settings.sender_smtp_unsubscribe_mailto)
    renderer = EmailRenderer(directory, identity)
    password = settings.sender_smtp_password
    server = SmtpServer(
        settings.sender_smtp_host,
        settings.sender_smtp_port,
        settings.sender_smtp_tls,
        settings.sender_smtp_username,
        password.get_secret_value() if password is not None else None,
    )
    links: Callable[[Command], TrackingLinks] | None = None
    base_url, secret = settings.sender_tracking_base_url, settings.tracking_secret
    if base_url is not None and secret is None:
        raise ValueError("SME_SENDER_TRACKING_BASE_URL needs SME_TRACKING_SECRET to sign links")
    if base_url is not None and secret is not None:
        key = secret.get_secret_value()
        links = partial(_links, base_url=str(base_url), secret=key)
    elif settings.sender_smtp_unsubscribe_mailto is None:
        # Large mailbox providers expect a List-Unsubscribe header on bulk mail.
        log.warning(
            "no List-Unsubscribe header: set SME_TRACKING_SECRET and "
            "SME_SENDER_TRACKING_BASE_URL, or SME_SENDER_SMTP_UNSUBSCRIBE_MAILTO"
        )
    adapter = SmtpAdapter(
        renderer,
        server,
        settings.sender_timeout_seconds,
        settings.sender_smtp_address_attribute,
        links,
    )
    return Sender(settings, Channel.EMAIL, adapter)


def _links(command: Command, base_url: str, secret: str) -> TrackingLinks:
    return tracking_links(command, base_url, secret)


def run_smtp_sender(settings: Settings, templates_dir: Path | None) -> int:
    try:
        sender = smtp_sender(settings, templates_dir)
    except ValueError as exc:
        print(f"sme: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(sender))
    return 0
