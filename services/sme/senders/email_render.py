"""Rendering one command into an email: the step's template (Jinja2, sandboxed) with the
command's allow-listed data, the recipient from a profile attribute, and the headers a bulk
sender needs (List-Unsubscribe with one-click, a Message-ID derived from the command id).

Templates live in one directory: `<id>.subject.txt` (required) and `<id>.html` and/or
`<id>.txt` (at least one; both make a multipart/alternative message). Only `.html` is
autoescaped. Undefined names are errors (StrictUndefined): a typo bounces the message with
`template_error` instead of sending "Hello ,"; write
`{{ attributes.first_name | default("there") }}` for values a user may lack."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from sme.contracts.commands import Command
from sme.contracts.reasons import DeliveryFailure
from sme.core.tracking_links import TrackingLinks

TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]+(?:[./][A-Za-z0-9_-]+)*$")
"""Letters, digits, `_`, `-`, with single `.` or `/` between them: never `..`, a leading `/`
or a hidden file, so an id cannot leave the templates directory."""
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:\\\[\]]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
MAX_SUBJECT = 998
COMMAND_ID_HEADER = "X-SME-Command-Id"


class RenderError(Exception):
    """The command cannot become a message; `failure` says why (bounced, never retried)."""

    def __init__(self, failure: DeliveryFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail[:300]


@dataclass(frozen=True, slots=True)
class EmailIdentity:
    """Who sends, and the fixed parts of the unsubscribe header."""

    from_address: str
    unsubscribe_mailto: str | None = None

    @property
    def domain(self) -> str:
        return parseaddr(self.from_address)[1].rpartition("@")[2] or "sme.invalid"


def checked_template_id(template: str) -> str:
    """`template` if it is a safe relative name; RenderError otherwise."""
    if len(template) > 200 or not TEMPLATE_ID.match(template):
        raise RenderError(DeliveryFailure.TEMPLATE_ERROR, f"invalid template id {template[:80]!r}")
    return template


def checked_address(value: object) -> str:
    """A plain `local@domain` address (no display name, no header characters)."""
    if not isinstance(value, str) or len(value) > 254 or not _ADDRESS.match(value):
        raise RenderError(DeliveryFailure.NO_ADDRESS, "the recipient address is not valid")
    return value


def message_id(command_id: str, domain: str) -> str:
    """The same id for every attempt of one command: a receiver drops repeats by it."""
    digest = hashlib.sha256(command_id.encode("utf-8")).hexdigest()[:32]
    return f"<sme.{digest}@{domain}>"


class EmailRenderer:
    def __init__(self, templates_dir: Path, identity: EmailIdentity) -> None:
        if not templates_dir.is_dir():
            raise ValueError(f"the templates directory {templates_dir} does not exist")
        if not parseaddr(identity.from_address)[1]:
            raise ValueError("a From address is needed (SME_SENDER_SMTP_FROM)")
        self.identity = identity
        # The loader refuses paths that leave the directory (includes and extends too);
        # the sandbox keeps a template from reaching Python internals.
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            auto_reload=True,
        )

    def render(
        self,
        command: Command,
        address_attribute: str,
        links: TrackingLinks | None,
        now: datetime,
    ) -> EmailMessage:
        """The message for `command`; RenderError when it has no address or will not render."""
        to = checked_address(command.data.attributes.get(address_attribute))
        name = checked_template_id(command.template)
        unsubscribe = links.unsubscribe() if links is not None else None
        context = _context(command, links, unsubscribe)
        subject = self._render(f"{name}.subject.txt", context, required=True)
        html = self._render(f"{name}.html", context, required=False)
        text = self._render(f"{name}.txt", context, required=False)
        if html is None and text is None:
            raise RenderError(DeliveryFailure.TEMPLATE_ERROR, f"no {name}.html nor {name}.txt")
        message = EmailMessage()
        message["From"] = self.identity.from_address
        message["To"] = to
        message["Subject"] = " ".join((subject or "").split())[:MAX_SUBJECT]
        message["Date"] = format_datetime(now)
        message["Message-ID"] = message_id(command.command_id, self.identity.domain)
        message[COMMAND_ID_HEADER] = " ".join(command.command_id.split())
        targets = [f"<{unsubscribe}>"] if unsubscribe else []
        if self.identity.unsubscribe_mailto:
            targets.append(f"<mailto:{self.identity.unsubscribe_mailto}?subject=unsubscribe>")
        if targets:
            message["List-Unsubscribe"] = ", ".join(targets)
        if unsubscribe and unsubscribe.startswith("https://"):
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        if text is not None:
            message.set_content(text)
        if html is not None:
            if links is not None:
                html = _with_pixel(html, links.open_pixel())
            if text is None:
                message.set_content(html, subtype="html")
            else:
                message.add_alternative(html, subtype="html")
        return message

    def _render(self, name: str, context: dict[str, Any], *, required: bool) -> str | None:
        try:
            template = self.env.get_template(name)
        except TemplateNotFound:
            if required:
                raise RenderError(DeliveryFailure.TEMPLATE_ERROR, f"no template {name}") from None
            return None
        except Exception as exc:  # any load failure is the template's fault
            raise RenderError(DeliveryFailure.TEMPLATE_ERROR, f"{name}: {exc}") from exc
        try:
            return template.render(context)
        except Exception as exc:  # a user's template may raise anything
            raise RenderError(
                DeliveryFailure.TEMPLATE_ERROR, f"{name}: {type(exc).__name__}: {exc}"
            ) from exc


def _context(
    command: Command, links: TrackingLinks | None, unsubscribe: str | None
) -> dict[str, Any]:
    """What a template sees: the data, the command's ids, and the link helpers (without
    tracking, `track(url)` returns the URL itself and the other links are None)."""

    def track(url: str) -> str:
        return links.click(url) if links is not None else url

    return {
        "attributes": command.data.attributes,
        "event": command.data.event,
        "omitted": command.data.omitted,
        "command": {
            "command_id": command.command_id,
            "workspace_id": command.workspace_id,
            "user_id": command.user_id,
            "config_id": command.config_id,
            "step_id": command.step_id,
            "variant": command.variant,
            "template": command.template,
            "timezone": command.timezone,
            "decided_at": command.decided_at,
            "test": command.test,
        },
        "track": track,
        "unsubscribe_url": unsubscribe,
        "open_pixel_url": links.open_pixel() if links is not None else None,
    }


def _with_pixel(html: str, pixel_url: str) -> str:
    """The HTML with the open pixel before `</body>` (or at the end)."""
    # str(): the template's output is already HTML; str + Markup would escape it again
    tag = str(
        Markup('<img src="{}" width="1" height="1" alt="" style="display:none">').format(pixel_url)
    )
    at = html.lower().rfind("</body>")
    return html + tag if at < 0 else html[:at] + tag + html[at:]
