"""DKIM signatures (RFC 6376) on the final bytes of each digest.

The canonicalization, header selection and folding are dkimpy's; the RSA step is OpenSSL's
(``cryptography``): dkimpy signs in pure Python, 6 ms a message, which at 100,000 messages
is ten minutes of CPU; OpenSSL takes 0.3 ms (bench/signing.py). The signature's time (``t=``)
is the digest's ``Date``, so a pending digest rendered again gets the same bytes, signature
included.

Signed: From, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe and
List-Unsubscribe-Post (required for one-click unsubscribe to count), the MIME headers and
our bulk headers. From, Subject and the List-Unsubscribe pair are signed once more than they
occur, so a copy with one of them added no longer verifies.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim import RE_BTAG, fold, hash_headers, rfc822_parse
from dkim.canonicalization import CanonicalizationPolicy

from newsletter.config.settings import DkimSettings
from newsletter.errors import ConfigError

SIGNED = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
    b"precedence",
    b"auto-submitted",
    b"feedback-id",
)
OVERSIGNED = (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post")
CANONICALIZATION = b"relaxed/simple"  # dkimpy's default: headers relaxed, the body as it is
_POLICY = CanonicalizationPolicy.from_c_value(CANONICALIZATION)
MIN_BITS = 1024  # receivers ignore shorter keys (RFC 8301)


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages as ``domain`` with ``selector``; holds the key as PEM text (it goes
    to the render workers in that form)."""

    domain: str
    selector: str
    pem: bytes = field(repr=False)

    @cached_property
    def key(self) -> rsa.RSAPrivateKey:
        """The private key, loaded once per process."""
        key = serialization.load_pem_private_key(self.pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)  # (checked by load_key)
        return key

    def __reduce__(self) -> tuple:
        return (DkimSigner, (self.domain, self.selector, self.pem))

    def sign(self, data: bytes, when: datetime) -> bytes:
        """``data`` with a DKIM-Signature header in front, dated ``when``."""
        end = data.index(b"\r\n\r\n") + 4
        headers, _ = rfc822_parse(data[:end])
        policy = _POLICY
        present = {name.lower() for name, _ in headers}
        include = [name for name in SIGNED if name in present]
        include += [name for name in OVERSIGNED if name in present]
        body_hash = hashlib.sha256(policy.canonicalize_body(data[end:])).digest()
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", CANONICALIZATION),
            (b"d", self.domain.encode("ascii")),
            (b"s", self.selector.encode("ascii")),
            (b"t", str(int(when.timestamp())).encode("ascii")),
            (b"h", b" : ".join(include)),  # (spaces: where fold may break the line)
            (b"bh", base64.b64encode(body_hash)),
            (b"b", b"0" * 60),  # (as dkimpy: b= folds onto its own line before it is filled)
        ]
        name = b"DKIM-Signature"
        unsigned = RE_BTAG.sub(b"\\1", fold(_tags(fields), namelen=len(name), linesep=b"\r\n"))
        digest = hashlib.sha256()
        canonical = policy.canonicalize_headers(headers)
        hash_headers(digest, policy, canonical, include, (name, b" " + unsigned), dict(fields))
        signature = self.key.sign(
            digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        fields[-1] = (b"b", base64.b64encode(signature))
        value = fold(_tags(fields) + b"\r\n", namelen=len(name), linesep=b"\r\n")
        return name + b": " + value + data


def _tags(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"; ".join(b"=".join(pair) for pair in fields)


def make_dkim_signer(settings: DkimSettings, environ: Mapping[str, str]) -> DkimSigner | None:
    """The signer ``settings`` describe (None when DKIM is off); ConfigError when the key
    cannot be had."""
    if not settings.enabled:
        return None
    if not (
        settings.domain
        and settings.selector
        and (settings.private_key_file or settings.private_key_env)
    ):
        # Only a config read despite its mistakes (validate) gets here: those mistakes
        # are reported with their lines; load_config refuses such a config.
        return None
    return DkimSigner(settings.domain, settings.selector, load_key(settings, environ))


def load_key(settings: DkimSettings, environ: Mapping[str, str]) -> bytes:
    """The PEM text of the private key, checked: an RSA key of at least 1024 bits."""
    if settings.private_key_env:
        where = f"${settings.private_key_env}"
        pem = environ.get(settings.private_key_env, "").encode()
        if not pem.strip():
            raise ConfigError(f"{where} is empty: export the DKIM private key (PEM) in it")
    else:
        assert settings.private_key_file is not None
        where = str(settings.private_key_file)
        try:
            pem = settings.private_key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read the DKIM private key ({exc.strerror or exc}); check "
                "dkim.private_key_file and that this user may read it"
            ) from exc
    return _checked(pem, where)


def _checked(pem: bytes, where: str) -> bytes:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{where}: not an unencrypted PEM private key ({exc}); make one with "
            "'openssl genrsa -out dkim.pem 2048'"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: the DKIM key must be an RSA key (rsa-sha256)")
    if key.key_size < MIN_BITS:
        raise ConfigError(
            f"{where}: a {key.key_size}-bit key is too short (receivers ignore keys under "
            f"{MIN_BITS} bits); use 2048 bits"
        )
    return pem


def dns_record(signer: DkimSigner) -> tuple[str, str]:
    """The TXT record to publish: its name and its value."""
    public = signer.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    name = f"{signer.selector}._domainkey.{signer.domain}"
    return name, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"
