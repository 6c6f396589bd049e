"""DKIM benchmark: signing one digest, ours beside dkimpy's own ``sign``, side by side.

Run:  python bench/signing.py [--messages 300] [--size 50000]

  ours     newsletter.render.dkim.DkimSigner.sign: dkimpy's canonicalization and header
           hashing, OpenSSL's RSA (cryptography)
  dkimpy   dkim.sign with the same key, headers and canonicalization (RSA in pure Python)
  limit    the RSA signature alone with OpenSSL, and a SHA-256 of the body: what any signer
           must spend
With a 2048-bit key, on messages of --size bytes framed like a digest.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from newsletter.render.dkim import OVERSIGNED, SIGNED, DkimSigner

WHEN = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def message(size: int) -> bytes:
    head = (
        b"From: Research digest <digest@example.org>\r\nTo: reader@example.org\r\n"
        b"Subject: 7 new papers\r\nDate: Mon, 23 Nov 2026 07:00:00 +0000\r\n"
        b"Message-ID: <digest.0123456789abcdef@example.org>\r\nList-Id: digest.example.org\r\n"
        b"List-Unsubscribe: <mailto:unsubscribe@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n\r\n'
    )
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod te\r\n"
    return head + line * (size // len(line))


def per_message(count: int, sign) -> float:
    """Milliseconds per call of ``sign()``."""
    start = time.perf_counter()
    for _ in range(count):
        sign()
    return (time.perf_counter() - start) / count * 1000


def measure(messages: int = 300, size: int = 50_000) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    data = message(size)
    signer = DkimSigner("example.org", "bench", pem)
    include = list(SIGNED + OVERSIGNED)
    body = data.split(b"\r\n\r\n", 1)[1]
    ms = {
        "ours": per_message(messages, lambda: signer.sign(data, WHEN)),
        "dkimpy": per_message(
            max(1, messages // 10),
            lambda: dkim.sign(data, b"bench", b"example.org", pem, include_headers=include),
        ),
        "limit": per_message(
            messages,
            lambda: key.sign(
                hashlib.sha256(body).digest(),
                padding.PKCS1v15(),
                utils.Prehashed(hashes.SHA256()),
            ),
        ),
    }
    return {
        "messages": messages,
        "size": len(data),
        "ms_per_message": ms,
        "ratios": {
            "dkimpy / ours": ms["dkimpy"] / ms["ours"],
            "ours / limit": ms["ours"] / ms["limit"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--size", type=int, default=50_000)
    args = parser.parse_args()
    result = measure(args.messages, args.size)
    print(f"DKIM rsa-sha256, 2048-bit key, {result['size']:,}-byte messages")
    for name, value in result["ms_per_message"].items():
        print(f"  {name:<8} {value:7.2f} ms/message")
    for name, value in result["ratios"].items():
        print(f"  {name:<14} {value:6.1f}")


if __name__ == "__main__":
    main()
