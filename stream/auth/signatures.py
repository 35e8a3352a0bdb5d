"""Signed reports: Ed25519 (pyca/cryptography) over a report's canonical JSON.

The bytes signed are the report's JSON object **without** its ``signature`` field (``source``
included), with keys sorted at every depth, no whitespace (``,`` and ``:`` separators), strings
as UTF-8 with only what JSON requires escaped (``"``, ``\\``, control characters as ``\\u00XX``):
the bytes Python's ``json.dumps(report, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode()`` gives. The signature is the 64-byte Ed25519 signature in
standard base64. Keys are PEM files (``soiree source keygen``); a source's public key is kept
in the sources file as the base64 of its 32 raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "canonical",
    "sign",
    "signature_matches",
    "load_private_key",
    "load_public_key",
    "public_key_text",
    "public_key_from_text",
    "write_key_pair",
]


def canonical(report: dict[str, Any]) -> bytes:
    """The bytes a report's signature covers."""
    unsigned = {key: value for key, value in report.items() if key != "signature"}
    return orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)


def sign(report: dict[str, Any], key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(canonical(report))).decode()


def signature_matches(report: dict[str, Any], key: Ed25519PublicKey) -> bool:
    signature = report.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical(report))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file; ValueError saying what is wrong."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise ValueError(f"cannot read the key {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file; ValueError saying what is wrong."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read the public key {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def write_key_pair(prefix: Path) -> tuple[Path, Path]:
    """A new key pair: ``<prefix>.key`` (private, mode 0600) and ``<prefix>.pub``."""
    key = Ed25519PrivateKey.generate()
    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
