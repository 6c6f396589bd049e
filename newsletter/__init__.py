"""newsletter: personalized research-paper email digests from daily paper listings.

The stages, in the order a paper goes through them (each passes frozen values from
``models``):

- ``sources``: find digest files and read each format into a ``Digest``;
- ``ingest`` → ``store``: digests into the SQLite store of ``Paper``s;
- ``text`` (the matching rules) → ``keyword_index`` → ``matching``: each profile's
  ``Selection`` of ``Match``es;
- ``render`` (templates → views) → ``mime`` (bytes), with ``envelope`` and ``links``:
  a ``RenderedEmail``; ``parallel`` runs match and render on every core;
- ``delivery``: the Maildir outbox, an SMTP server, or nowhere (dry run), recorded in the
  ``ledger``.

On top: ``pipeline`` (the use cases: a send ``Run``, preview, ingest), ``slots`` and
``daemon`` (the schedule and the long-running sender), ``cli`` (the command line).
Beyond one machine: ``postgres`` (the store in PostgreSQL), ``workers`` (a send shared in
chunks), ``leader`` (which ``newsletter run`` schedules), ``migrate`` (``migrate-store``).
Settings come from ``config`` and ``profiles`` (through ``yamlfile`` and ``checks``);
every error the library raises is in ``errors``.
"""

__version__ = "0.1.0"
