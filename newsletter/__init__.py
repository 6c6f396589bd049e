"""newsletter: personalized research-paper email digests from daily paper listings.

The rooms, in the order a paper goes through them (each passes frozen values from
``models``):

- ``sources``: the kinds of service fetched (a registry), and every digest format read by
  its content into a ``Digest``;
- ``store``: digests ingested into the store of ``Paper``s (SQLite, or PostgreSQL);
- ``profiles`` → ``matching``: each subscriber's profile, and its ``Selection`` of
  ``Match``es;
- ``render``: views and templates → the MIME message, with its envelope, signed links and
  DKIM: a ``RenderedEmail``;
- ``delivery``: the transports (a registry: the Maildir outbox, SMTP) and the flow that
  hands messages over, each recorded in the ``ledger``.

On top: ``send`` (the send use case: a ``Run``, its sending, the render pool, preview),
``cluster`` (a send shared in chunks by workers on PostgreSQL, and the schedule's leader),
``schedule`` (who is due when, and the daemon), ``subscribers`` (status, unsubscribes,
bounces), ``web`` (``newsletter serve``) and ``cli`` (the command line). Settings come from
``config`` (through ``files``); what the program takes from outside is the ``world``;
every error the library raises is in ``errors``.
"""

__version__ = "0.1.0"
