"""The parts a send is wired from, as the config and the environment say: the transport, the
renderer (templates, link signer, DKIM); what would stop a send."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from newsletter.config.settings import Config
from newsletter.delivery.flow import Retry, deliver
from newsletter.delivery.registry import transport_kind
from newsletter.delivery.transport import Outgoing, Result, Transport
from newsletter.errors import ConfigError
from newsletter.models import RenderedEmail
from newsletter.render.links import make_signer
from newsletter.render.notices import Notices
from newsletter.render.renderer import Renderer
from newsletter.render.templates import load_templates
from newsletter.world import World

if TYPE_CHECKING:
    from newsletter.render.dkim import DkimSigner


TEMPLATES_CACHE = "templates.cache"  # the HTML template with its CSS inlined, in the state folder


def make_transport(config: Config, environ: Mapping[str, str]) -> Transport:
    """The configured delivery (``delivery.registry``): the Maildir outbox, the SMTP
    server, ..."""
    return transport_kind(config.delivery).make(config, environ)


def make_renderer(config: Config, environ: Mapping[str, str]) -> Renderer:
    """The renderer for ``config``: templates compiled, link secrets from ``environ``."""
    signer = make_signer(config.render, environ)
    dkim = _dkim_signer(config, environ)
    cache = config.state_dir / TEMPLATES_CACHE if config.state_dir.is_dir() else None
    return Renderer(config.render, load_templates(config.templates, cache), signer, dkim)


def make_notices(config: Config, environ: Mapping[str, str]) -> Notices:
    """The renderer of the sign-up flow's mails (confirm, known, welcome)."""
    return Notices(config.render, config.templates, _dkim_signer(config, environ))


def send_one(config: Config, world: World, email: RenderedEmail) -> tuple[Result, str]:
    """Deliver one message through the configured transport (retried as a send retries):
    what happened, and where it went; nothing is recorded (the ledger is for digests)."""
    transport = make_transport(config, world.environ)
    retry = Retry(config.smtp.max_attempts, config.smtp.retry_delay, sleep=world.sleep)
    (result,) = [r for burst in deliver(transport, [Outgoing.of(email)], retry) for r in burst]
    return result, transport.where


def _dkim_signer(config: Config, environ: Mapping[str, str]) -> DkimSigner | None:
    """The DKIM signer, or None when DKIM is off (its libraries are then not imported: a
    tenth of a second of each start)."""
    if not config.dkim.enabled:
        return None
    from newsletter.render.dkim import make_dkim_signer

    return make_dkim_signer(config.dkim, environ)


def dkim_record(config: Config, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The DNS TXT record (name, value) receivers check the DKIM signatures against, or
    None when DKIM is off."""
    signer = _dkim_signer(config, environ)
    if signer is None:
        return None
    from newsletter.render.dkim import dns_record

    return dns_record(signer)


def setup_problems(config: Config, environ: Mapping[str, str]) -> list[str]:
    """What a send would stumble on that the config file alone does not show: templates
    that do not compile, secrets missing from ``environ``, a DKIM key that will not do."""
    problems: list[str] = []
    for build in (make_renderer, dkim_record):  # (each reports its own first mistake)
        try:
            build(config, environ)
        except ConfigError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
    problems.extend(transport_kind(config.delivery).setup_problems(config, environ))
    return problems


def try_connection(config: Config, environ: Mapping[str, str]) -> str | None:
    """Connect where the configured transport delivers (nothing is sent) and say what
    happened, or None when it has nothing to connect to; a DeliveryError says what failed
    and what to check."""
    connect = transport_kind(config.delivery).try_connection
    return None if connect is None else connect(config, environ)
