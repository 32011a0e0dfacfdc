"""Process entry of `sme sender webhook`: settings checked, topics ensured, then the loop
until SIGINT/SIGTERM (a stop cancels the loop; uncommitted commands are redelivered)."""

from __future__ import annotations

import asyncio
import signal
import sys

from sme.contracts.channels import Channel
from sme.senders.runner import Sender
from sme.senders.webhook import WebhookAdapter
from sme.settings import Settings
from sme.topics import ensure_topics


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
