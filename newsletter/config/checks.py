"""Checks of single settings that need more than a kind, and checks across settings (sources,
SMTP ports, DKIM alignment, the store URL)."""

from __future__ import annotations

import os
import re
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from newsletter.config.settings import (
    Config,
    DkimSettings,
    ImapSettings,
    SmtpSettings,
    SourceSettings,
)
from newsletter.delivery.registry import TRANSPORTS
from newsletter.files.problems import Problems
from newsletter.models import ANNOUNCE_TYPES, ARXIV_CATEGORY
from newsletter.sources.registry import source_kind

DOMAIN_NAME = re.compile(r"(?:[^\s.@]+\.)+[^\s.@]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def source_problem(source: SourceSettings, earlier: list[str]) -> str | None:
    """What is wrong with a source entry, if anything."""
    if not _NAME.fullmatch(source.name):
        return "each source needs a 'name' of letters, digits, '.', '_' or '-' (it names files)"
    if source.name in earlier:
        return f"the source name '{source.name}' is used twice; give each its own"
    if source.url and not source.url.startswith(("https://", "http://")):
        return f"'url' must start with https:// (or http://), not {source.url!r}"
    return _type_problem(source)


def _check_subscribe(problems: Problems, config: Config) -> None:
    """The sign-up page's domains are domain names; its links need the public URL."""
    for index, domain in enumerate(config.subscribe.domains):
        if not DOMAIN_NAME.fullmatch(domain.removeprefix("@")):
            problems.add(
                ("subscribe", "domains", index),
                f"{domain!r} is not a domain name (like uni-example.edu)",
            )
    if config.subscribe.enabled and not config.render.public_url:
        problems.add(
            ("subscribe", "enabled"),
            "the sign-up page mails a confirmation link to <public_url>/confirm: set "
            "'public_url' (where readers reach newsletter serve)",
        )


def _type_problem(source: SourceSettings) -> str | None:
    """What is wrong with the settings that depend on the source's type."""
    bad = [c for c in source.categories if not ARXIV_CATEGORY.fullmatch(c)]
    if bad:
        return f"'{bad[0]}' is not an arXiv category (like cs.LG or math.PR)"
    unknown = [t for t in source.announce_types if t not in ANNOUNCE_TYPES]
    if unknown or not source.announce_types:
        return f"'announce_types' takes some of {', '.join(ANNOUNCE_TYPES)}" + (
            f", not '{unknown[0]}'" if unknown else ""
        )
    return source_kind(source.type).problem(source)


def cross_checks(problems: Problems, data: dict, config: Config) -> None:
    """What no single setting can say about itself."""
    _check_digests_folder(problems, config.digests)
    _check_smtp(problems, data.get("smtp"), config.smtp)
    _check_dkim(problems, config.dkim, config.render.sender)
    _check_subscribe(problems, config)
    _check_imap(problems, config.bounce.imap)
    problem = store_url_problem(config.store)
    if problem:
        problems.add(("store",), problem)
    render, smtp = config.render, data.get("smtp")
    for key in ("public_url", "unsubscribe_url"):
        problem = public_url_problem(key, getattr(render, key))
        if problem:
            problems.add((key,), problem)
    if render.bounce_address:
        problem = bounce_address_problem(render.bounce_address)
        if problem:
            problems.add(("bounce_address",), problem)
    sender_problem = check_sender(render.sender)
    if sender_problem:
        problems.add(("sender",), sender_problem)
    transport = TRANSPORTS[config.delivery]
    if transport.section and transport.section not in data:
        problems.add(
            ("delivery",),
            f"delivery is {transport.name} but there is no '{transport.section}:' section "
            f"({transport.section_hint})",
        )
    if isinstance(smtp, dict) and "password" in smtp:
        problems.add(
            ("smtp", "password"),
            "never put the password in the config: set 'password_env' to the name of an "
            "environment variable that holds it",
        )
    schedule = config.schedule
    if schedule.cron:
        try:
            schedule.trigger()
        except ValueError as exc:
            problems.add(("schedule", "cron"), f"'cron' {schedule.cron!r}: {exc}")


def store_url_problem(store: str) -> str | None:
    """Why ``store`` names no store: 'sqlite', or a PostgreSQL URL without a password."""
    if store == "sqlite":
        return None
    parts = urlsplit(store)
    if parts.scheme not in ("postgresql", "postgres"):
        return (
            f"'store' {store!r} must be 'sqlite' (a file in state_dir) or a PostgreSQL URL "
            "like postgresql://newsletter@db.example.org/newsletter"
        )
    if parts.password is not None:
        return (
            "never put the password in the store URL: set 'store_password_env' to the name "
            "of an environment variable that holds it"
        )
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        return f"'store' {store!r} names no database: add it, as in postgresql://user@host/db"
    return None


_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def public_url_problem(key: str, url: str | None) -> str | None:
    """Why ``url`` cannot start the links of digests: https is required (links carry
    tokens), except on a loopback host (tests, a proxy on the same machine)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return None
    return f"'{key}' must start with https:// (links carry tokens), not {url!r}"


# The token VERP adds to the local part: "+" and 20 characters; local parts hold 64 at most.
VERP_LOCAL_MAX = 64 - 21


def bounce_address_problem(address: str) -> str | None:
    """What is wrong with ``bounce_address``, or None."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"'bounce_address' {address!r} is not a valid address: {exc}"
    local = address.rpartition("@")[0]
    if "+" in local or len(local) > VERP_LOCAL_MAX:
        return (
            f"'bounce_address' needs a local part without '+' of at most {VERP_LOCAL_MAX} "
            f"characters (a token is added to it), e.g. bounces@example.org, not {address!r}"
        )
    return None


def digests_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot serve as the digests folder, or None."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return f"the digests folder {folder} {what}; create it, or fix 'digests'"
    if not os.access(folder, os.R_OK | os.X_OK):
        return f"the digests folder {folder} cannot be read; fix its permissions"
    return None


def _check_digests_folder(problems: Problems, folder: Path) -> None:
    problem = digests_folder_problem(folder)
    if problem:
        problems.add(("digests",), problem)


def check_sender(sender: str) -> str | None:
    """What is wrong with the ``sender`` setting, or None."""
    _, address = parseaddr(sender)
    example = "e.g. 'Digest <digest@example.org>'"
    if "@" not in address:
        return f"'sender' must hold an address, {example}, not {sender!r}"
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"'sender' {address!r} is not a valid address: {exc} ({example})"
    return None


# The port each security setting is normally served on (RFC 8314 and RFC 6409).
_PORTS = {465: ("ssl",), 587: ("starttls", "none"), 25: ("starttls", "none")}
_USUAL_PORT = {
    "ssl": "TLS from the start is usually served on port 465",
    "starttls": "STARTTLS is usually served on port 587 (or 25)",
    "none": "plain SMTP is served on port 25 (or 587 on a relay of your own)",
}


def _check_smtp(problems: Problems, data: object, smtp: SmtpSettings) -> None:
    """Settings that can only fail when the connection is made."""
    if not isinstance(data, dict):
        return
    expected = _PORTS.get(smtp.port)  # none for port 0: the port then follows the security
    if expected and smtp.security not in expected:
        problems.add(
            ("smtp", "security"),
            f"port {smtp.port} expects security: {' or '.join(expected)}, not "
            f"{smtp.security}; {_USUAL_PORT[smtp.security]}: set the port your provider "
            "gives with the security it names",
        )
    if smtp.helo_name is not None and not DOMAIN_NAME.fullmatch(smtp.helo_name):
        problems.add(
            ("smtp", "helo_name"),
            f"'helo_name' {smtp.helo_name!r} is not a domain name: give this host's name as "
            "the world sees it (mail.example.org), or leave it out",
        )
    if smtp.username and not smtp.password_env:
        problems.add(
            ("smtp", "username"),
            "'username' is set but 'password_env' is not: name the environment variable "
            "that holds the password (password_env: NEWSLETTER_SMTP_PASSWORD)",
        )


def _check_imap(problems: Problems, imap: ImapSettings) -> None:
    """The bounce mailbox on IMAP: a login, and never a password in clear over a network."""
    if not imap.host:
        return
    where = ("bounce", "imap")
    if not imap.username or not imap.password_env:
        problems.add(
            (*where, "username" if not imap.username else "password_env"),
            "reading bounces over IMAP needs 'username' and 'password_env' (the name of the "
            "environment variable that holds the password, e.g. NEWSLETTER_IMAP_PASSWORD)",
        )
    if imap.security == "none" and imap.host not in _LOOPBACK:
        problems.add(
            (*where, "security"),
            f"security: none would send the IMAP password to {imap.host} in clear: use ssl "
            "(port 993) or starttls (143); none is only for a server on this machine",
        )


_SELECTOR = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def _check_dkim(problems: Problems, dkim: DkimSettings, sender: str) -> None:
    """All of dkim or none of it; a domain that aligns with the sender's (DMARC)."""
    if not dkim.enabled:
        return
    for key in ("domain", "selector"):
        if not getattr(dkim, key):
            problems.add(("dkim",), f"'dkim' needs a '{key}' (see the README, DKIM)")
    if bool(dkim.private_key_file) == bool(dkim.private_key_env):
        problems.add(
            ("dkim",),
            "'dkim' needs the private key in one place: 'private_key_file' (a PEM file) or "
            "'private_key_env' (a variable holding the PEM text)",
        )
    if dkim.selector and not _SELECTOR.fullmatch(dkim.selector):
        problems.add(
            ("dkim", "selector"),
            f"'selector' is the label before ._domainkey in DNS (like mail2026), not "
            f"{dkim.selector!r}",
        )
    if dkim.domain:
        problem = dkim_alignment_problem(dkim.domain, sender)
        if problem:
            problems.add(("dkim", "domain"), problem)


def dkim_alignment_problem(domain: str, sender: str) -> str | None:
    """Why a DKIM signature for ``domain`` would not align with ``sender`` (DMARC's relaxed
    alignment: the same domain, or one a subdomain of the other), or None."""
    if not DOMAIN_NAME.fullmatch(domain):
        return f"'domain' must be a domain name (like example.org), not {domain!r}"
    ours = parseaddr(sender)[1].rpartition("@")[2].lower()
    theirs = domain.lower().rstrip(".")
    if ours == theirs or ours.endswith("." + theirs) or theirs.endswith("." + ours):
        return None
    return (
        f"dkim.domain {domain} does not align with the sender's domain {ours}: receivers "
        f"checking DMARC would not count the signature; sign as {ours} (or a parent domain "
        "of it)"
    )
