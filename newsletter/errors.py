"""The library's one exception tree. Each class carries the exit code the command line gives
it (as click's exceptions do); only the CLI turns these into messages and exit codes.

Exit codes: 1, some work failed (a file rejected, a delivery failed, the lock busy);
2, usage or configuration errors (nothing was done).
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_FAILED = 1
EXIT_USAGE = 2


class NewsletterError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = EXIT_FAILED

    def __reduce__(self) -> tuple:
        # Worker processes send errors back pickled; subclasses with other constructor
        # arguments say how to rebuild themselves.
        return (type(self), self.args)


class ConfigError(NewsletterError):
    """The configuration, a profile file or a template is missing or invalid.

    ``problems`` lists each mistake on its own (``file:line: message``); ``str()`` joins them."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple:
        return (type(self), (self.problems,))


class ProfileError(ConfigError):
    """The profile file (subscribers.yaml) has mistakes."""


class ProfilesUnreadable(ProfileError):
    """The profile file is invalid as it stands (before any change): the operator's to fix;
    a page can only ask to come back later."""


class TemplateError(ConfigError):
    """A digest template does not compile, or fails while rendering."""


class KeywordError(ConfigError):
    """A keyword that cannot be used; the message says why and how to fix it."""


class DigestError(NewsletterError):
    """A digest file cannot be read at all (it is rejected; other files go on)."""


class FetchFailure(NewsletterError):
    """One request of a fetch failed for good; the message names the URL and why (the
    fetch goes on with the others and reports it)."""


class MailboxError(NewsletterError):
    """A mailbox of bounce mail cannot be read (its IMAP server cannot be reached, refuses
    the login or the folder); the message names the server and what to fix."""


class StoreError(NewsletterError):
    """The SQLite store cannot be opened, migrated or written."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (a lost connection, a restart, connections
    refused): weather, ridden out by reconnecting within ``store_retry``. ``done``: what
    the send it cut short had done and recorded (a SendReport), when known."""

    def __init__(self, message: str, done: object = None) -> None:
        super().__init__(message)
        self.done = done

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.done))


class LeaseLost(StoreError):
    """A worker's lease on a chunk ran out and another worker took the chunk over: this one
    hands nothing more over."""


class BusyError(NewsletterError):
    """Another send (or the scheduler) holds the lock on the state folder."""


class DeliveryError(NewsletterError):
    """Delivery went wrong."""


class FatalDeliveryError(DeliveryError):
    """The run must stop now (authentication refused, TLS missing or untrusted)."""


class DeliveryFailure(DeliveryError):
    """One message failed; ``permanent`` says whether retrying can help, ``reconnect``
    whether the connection is still usable."""

    def __init__(
        self, message: str, code: int | None, permanent: bool, reconnect: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.reconnect = reconnect

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.code, self.permanent, self.reconnect))


class ServeError(NewsletterError):
    """The web app cannot listen where it was told to."""


class WorkerError(NewsletterError):
    """A worker process failed with something that is not a NewsletterError (a bug)."""
