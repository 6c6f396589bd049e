"""The library's exception tree; only the CLI turns these into messages and exit codes."""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(NewsletterError):
    """The configuration or a profile file is missing or invalid."""


class DigestError(NewsletterError):
    """A digest file cannot be read at all (it is rejected; other files go on)."""


class StoreError(NewsletterError):
    """The SQLite store cannot be opened, migrated or written."""


class DeliveryError(NewsletterError):
    """A message could not be delivered."""


class BusyError(NewsletterError):
    """Another send (or the scheduler) holds the lock on the state folder."""
