"""Selections into emails: each digest's views rendered with the templates (``views``,
``templates``) into text and HTML, kept under Gmail's clipping size, and composed into the
signed MIME message (``mime``, ``envelope``, ``links``, ``dkim``)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from email import parser as email_parser
from email import policy
from typing import TYPE_CHECKING

from newsletter.config.settings import RenderSettings
from newsletter.matching.explained import explanations, pack
from newsletter.matching.keywords import one_line
from newsletter.models import Envelope, RenderedEmail, Selection
from newsletter.render.envelope import digest_key, envelope_for, message_id_for, sender_domain
from newsletter.render.links import DigestLinks, Links, return_path
from newsletter.render.mime import Composer, EncodedHtml, Headers, encoded_html
from newsletter.render.templates import (
    CompiledTemplate,
    Templates,
    template_environment,
    template_loader,
)
from newsletter.render.tokens import Signer
from newsletter.render.views import DigestView, digest_view

if TYPE_CHECKING:  # (dkimpy and dnspython: imported by workers only when DKIM is on)
    from newsletter.render.dkim import DkimSigner

# Bytes of the HTML part as encoded on the wire (mime.encoded_html): Gmail clips messages
# whose HTML passes ~102 KB, encoded or decoded (it does not say); the encoded part is the
# longer, so counting it keeps both under.
HTML_BUDGET = 100_000


class Renderer:
    """Compiled templates for one look; ``render`` turns a Selection into an email."""

    def __init__(
        self,
        settings: RenderSettings,
        templates: Templates,
        signer: Signer | None = None,
        dkim: DkimSigner | None = None,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.dkim = dkim
        self.links = Links(settings, signer)
        self.templates = templates
        loader = template_loader(templates.folder)  # for templates that {% include %} others
        html_env = template_environment(loader, autoescape=True)
        text_env = template_environment(loader, autoescape=False)
        self.html = CompiledTemplate(
            html_env, templates.html, templates.html_name, templates.html_lines
        )
        self.text = CompiledTemplate(text_env, templates.text, templates.text_name)
        self.composer = Composer(settings)

    def __reduce__(self) -> tuple:
        # Sent to a worker process as its sources; it compiles them again there.
        return (Renderer, (self.settings, self.templates, self.signer, self.dkim))

    def envelope(self, email: str) -> Envelope:
        """The SMTP envelope of ``email``'s digests (a VERP return path when configured)."""
        path = return_path(self.settings, self.signer, email)
        return envelope_for(self.settings.sender, email, path)

    def render(
        self,
        selection: Selection,
        now: datetime,
        next_send: datetime | None = None,
        message_id: str | None = None,
    ) -> RenderedEmail | None:
        """The email for ``selection``, or None when it has no matches and send_empty is off;
        ``next_send`` (the digest after this one) tells when what did not fit will come.
        ``message_id``: the recorded one, when a pending digest is rendered again."""
        if not selection.ranked and not self.settings.send_empty:
            return None
        subscriber, sender = selection.subscriber, self.settings.sender
        chosen = tuple(match.paper.id for match in selection.matches)
        message_id = message_id or message_id_for(sender, subscriber.email, chosen)
        links = self.links.for_digest(subscriber.email, digest_key(message_id), chosen, now.date())
        view, html, part = self._fitting_html(selection, links, next_send)
        text = self.text.render(view)
        sent = chosen[: len(view.papers)]
        envelope = self.envelope(subscriber.email)
        headers = Headers(
            to_name=one_line(subscriber.name or ""),
            to_address=envelope.recipient,
            subject=view.subject,
            date=now,
            message_id=message_id,
        )
        data = self.composer.compose(headers, text, part, links)
        if self.dkim is not None:
            data = self.dkim.sign(data, now)  # (dated like the message: a resend is the same)
        return RenderedEmail(
            subscriber=subscriber.email,
            subject=view.subject,
            html=html,
            text=text,
            message_id=message_id,
            paper_ids=sent,
            data=data,
            envelope=envelope,
            explained=pack(explanations(selection.matches[: len(sent)])),
        )

    def test_copy(self, email: RenderedEmail, to: str, now: datetime) -> RenderedEmail:
        """``email`` as a test copy for the address ``to``: its subject marked ``[test]``,
        a Message-ID of its own (a mailbox must not take it for the digest), its bounces to
        the sender (never counted against the subscriber), and signed again; the rest, links
        included, exactly as the subscriber gets it."""
        message = email_parser.BytesParser(policy=policy.SMTP).parsebytes(email.data)
        del message["DKIM-Signature"]
        subject = f"[test] {email.subject}"
        message_id = f"<test.{uuid.uuid4().hex}@{sender_domain(self.settings.sender)}>"
        message.replace_header("Subject", subject)
        message.replace_header("Message-ID", message_id)
        data = message.as_bytes(policy=policy.SMTP)
        if self.dkim is not None:
            data = self.dkim.sign(data, now)
        envelope = envelope_for(self.settings.sender, to)
        return replace(email, subject=subject, message_id=message_id, data=data, envelope=envelope)

    def _fitting_html(
        self, selection: Selection, links: DigestLinks, next_send: datetime | None
    ) -> tuple[DigestView, str, EncodedHtml]:
        """The view, HTML and its encoded part with as many papers as fit ``HTML_BUDGET``
        (trending papers, last, go first).

        Gmail clips bigger messages; dropping trailing papers (and saying so) is better."""

        def attempt(keep: int | None) -> tuple[DigestView, str, EncodedHtml]:
            view = digest_view(selection, self.settings, links, keep, next_send)
            html = self.html.render(view)
            return view, html, encoded_html(html)

        view, html, part = attempt(None)
        if part.size <= HTML_BUDGET or len(view.papers) <= 1:
            return view, html, part
        low, high = 1, len(view.papers) - 1  # low always fits (or is the least we send)
        while low < high:
            middle = (low + high + 1) // 2
            if attempt(middle)[2].size <= HTML_BUDGET:
                low = middle
            else:
                high = middle - 1
        return attempt(low)


# -- the view model -------------------------------------------------------------------------
