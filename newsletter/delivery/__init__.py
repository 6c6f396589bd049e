"""Delivery: the transport protocol and its registry, the flow that hands messages over (with
retries and a watchdog), pacing, the Maildir outbox and SMTP."""
