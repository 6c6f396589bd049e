"""What a permanent refusal during the SMTP dialogue is about: the mailbox (it does not
exist or is disabled: the address should not be mailed again), or us (a policy or content
refusal, RFC 3463's 5.7.x: the sender's authentication, reputation or the message). Read
from the enhanced status code when the server gives one, else from the reply's words.
"""

from __future__ import annotations

import re

MAILBOX = "mailbox"  # the address cannot receive mail: suppress it as bounced
POLICY = "policy"  # the server refuses us, not the address: keep it, fix the cause

# RFC 3463: 5.1.1 bad destination mailbox, 5.1.10 a null MX (RFC 7505), 5.2.1 mailbox
# disabled. (5.1.2, a bad destination system, is often a typo in a domain we should not
# guess about; 5.2.2, a full mailbox, is the subscriber's to fix.)
_MAILBOX_STATUSES = frozenset({"5.1.1", "5.1.10", "5.2.1"})
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\b")
_LEADING_CODE = re.compile(r"^\d{3}[ -]")
# What servers that give no enhanced status say of a mailbox that does not exist.
_UNKNOWN_WORDS = re.compile(
    r"(?i)user unknown|unknown user|no such (user|mailbox|recipient|account)"
    r"|(mailbox|recipient|account|address)( \S+)? (does not|doesn't) exist"
    r"|(unknown|invalid) (recipient|mailbox|address)|mailbox (unavailable|not found|disabled)"
    r"|recipient (not found|unknown)|not a valid (mailbox|recipient)|user not found"
)


def refusal_kind(code: int | None, reply: str) -> str | None:
    """MAILBOX, POLICY, or None (another refusal, or not a permanent one) for a server's
    reply ``code`` and text."""
    if code is None or not 500 <= code < 600:
        return None
    status = enhanced_status(reply)
    if status is not None:
        if status in _MAILBOX_STATUSES:
            return MAILBOX
        return POLICY if status.startswith("5.7.") else None
    if code in (550, 551, 553) and _UNKNOWN_WORDS.search(reply):
        return MAILBOX
    return None


def enhanced_status(reply: str) -> str | None:
    """The enhanced status code (``5.1.1``) a reply starts with (after its code), if any."""
    found = _ENHANCED.match(_LEADING_CODE.sub("", reply.strip(), count=1))
    return found.group(0) if found else None


POLICY_HINT = (
    "a policy refusal (5.7.x) is about the sender or the message, not the address, which "
    "stays subscribed: read the server's reason, check the SPF, DKIM and DMARC records of "
    "the sender's domain and that the relay may send for it; then `newsletter send "
    "--retry-failed`"
)
