"""The mails of the sign-up flow, one at a time: the confirmation link, the "already
subscribed" note with its preferences link, and the welcome. Each comes from a pair of
templates (``<kind>.html.j2``, ``<kind>.txt.j2``; the user's in templates/ over the shipped
ones), strict and autoescaped, the HTML's CSS inlined by premailer for each mail (they are
few, so the digest's inline-once machinery is not needed), framed by the standard ``email``
package and signed with DKIM like a digest. They are personal mail, not list mail: no
List-Unsubscribe, no ``Precedence: bulk``; bounces go to the sender, never counted against
a subscriber."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

import jinja2

from newsletter.config.settings import RenderSettings
from newsletter.errors import TemplateError
from newsletter.models import RenderedEmail
from newsletter.render.envelope import envelope_for, sender_domain
from newsletter.render.templates import template_environment, template_loader
from newsletter.render.views import display_name

if TYPE_CHECKING:
    from pathlib import Path

    from newsletter.render.dkim import DkimSigner

KINDS = ("confirm", "known", "welcome", "fresh")


@dataclass(frozen=True)
class NoticeView:
    """Everything a notice template may use, as ``notice``."""

    kind: str  # confirm | known | welcome | fresh
    subject: str
    brand: str
    address: str
    link: str  # confirm: the confirmation page; known, welcome: the preferences page
    hours: int  # how long a confirmation link works
    keywords: tuple[str, ...]
    schedule: str  # "daily at 07:00 (Europe/Berlin)"
    first_digest: str  # "Fri 13 Mar 2026, 07:00 (Europe/Berlin)", or "" (paused)
    unsubscribe: str = ""  # welcome, fresh: the unsubscribe page


class Notices:
    """Renders and frames the sign-up flow's mails for one look (templates, sender, DKIM)."""

    def __init__(
        self, settings: RenderSettings, folder: Path, dkim: DkimSigner | None = None
    ) -> None:
        self.settings = settings
        self.brand = display_name(settings.sender)
        self.dkim = dkim
        loader = template_loader(folder)
        self.html_env = template_environment(loader, autoescape=True)
        self.text_env = template_environment(loader, autoescape=False)

    def subject(self, kind: str) -> str:
        """The subject line of a ``kind`` notice."""
        return {
            "confirm": f"Confirm your subscription to {self.brand}",
            "known": f"You are already subscribed to {self.brand}",
            "welcome": f"Welcome to {self.brand}",
            "fresh": f"Your new links for {self.brand}",
        }[kind]

    def render(self, view: NoticeView, now: datetime) -> RenderedEmail:
        """``view`` as a multipart email to ``view.address``, signed when DKIM is on."""
        text = self._render(self.text_env, f"{view.kind}.txt.j2", view)
        html = _inlined(self._render(self.html_env, f"{view.kind}.html.j2", view))
        domain = sender_domain(self.settings.sender)
        message_id = make_msgid(view.kind, domain=domain)
        envelope = envelope_for(self.settings.sender, view.address)
        message = EmailMessage(policy=SMTP if envelope.recipient.isascii() else SMTPUTF8)
        message["From"] = self.settings.sender
        message["To"] = envelope.recipient
        message["Subject"] = view.subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"  # (RFC 3834: no vacation replies)
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(html, subtype="html", cte="base64")
        data = message.as_bytes()
        if self.dkim is not None:
            data = self.dkim.sign(data, now)
        return RenderedEmail(
            subscriber=view.address,
            subject=view.subject,
            html=html,
            text=text,
            message_id=message_id,
            paper_ids=(),
            data=data,
            envelope=envelope,
        )

    def _render(self, env: jinja2.Environment, name: str, view: NoticeView) -> str:
        """Template ``name`` rendered for ``view``; a TemplateError naming file and line."""
        try:
            return env.get_template(name).render(notice=view)
        except jinja2.TemplateSyntaxError as exc:
            where = f"{exc.filename or name}:{exc.lineno}"
            raise TemplateError(f"{where}: template error: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{name}: template error: {exc.message}") from exc


def _inlined(html: str) -> str:
    """``html`` with its ``<style>`` rules inlined into its elements (@media rules stay)."""
    import premailer

    return premailer.Premailer(
        html,
        allow_network=False,
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level="CRITICAL",
    ).transform()
