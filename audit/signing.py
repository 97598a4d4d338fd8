"""Binding a results document to the run that wrote it: an HMAC-SHA256 over the canonical
document, with a key CI holds in an environment variable (``audit run --sign-key-env VAR``,
verified by ``audit gate --sign-key-env VAR``).

Recomputation (:mod:`audit.recompute`) proves that a document's verdicts follow from the
evidence it records; it cannot prove that the evidence came from the model. The signature
can, as far as the key is kept: only a process holding the key (the CI job's own
``audit run``) can write a document that verifies, and any edit after it breaks it.

The canonical form is the document as JSON with sorted keys, no spaces, ASCII only, and
the ``signature`` field left out; numbers are as results.json writes them (non-finite ones
null, integral ones as integers, as the reader takes them), so a document signed when
written verifies when read back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re

from audit.errors import InputError
from reports.document import Document, Signature, plain

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MIN_KEY_BYTES = 16


def signing_key(env: str) -> bytes:
    """The key held in the environment variable ``env``: checked before any work (exit 2, one line)."""
    if not isinstance(env, str) or not _ENV_NAME.match(env):
        raise InputError(f"--sign-key-env {str(env)[:60]!r} is not an environment variable name (letters, digits, _)")
    value = os.environ.get(env)
    if not value:
        raise InputError(f"--sign-key-env {env}: the environment variable {env} is not set or empty; set it to the "
                         "secret key your CI holds")
    key = value.encode("utf-8", "surrogateescape")
    if len(key) < MIN_KEY_BYTES:
        raise InputError(f"--sign-key-env {env}: the key is {len(key)} bytes long; use at least {MIN_KEY_BYTES} "
                         "random bytes (e.g. `openssl rand -hex 32`)")
    return key


def canonical(doc: Document) -> bytes:
    """The bytes the signature covers: the document without ``signature``, canonical JSON."""
    body = _integral(plain(doc.model_dump(by_alias=True, exclude={"signature"})))
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _integral(obj):
    """Integral numbers as integers: the reader takes JSON's 2.0 for the integer 2 (reports.reading), so the
    float the run wrote and the integer read back must sign alike."""
    if isinstance(obj, dict):
        return {k: _integral(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_integral(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer() and abs(obj) <= 2**63 - 1:
        return int(obj)
    return obj


def sign(doc: Document, env: str) -> None:
    """Set ``doc.signature`` from the key in ``env``."""
    value = hmac.new(signing_key(env), canonical(doc), hashlib.sha256).hexdigest()
    doc.signature = Signature(key_env=env, value=value)


def verify(doc: Document, env: str, where: str) -> None:
    """Refuse (exit 2, one line) a document that carries no signature or one the key in ``env`` does not give."""
    key = signing_key(env)
    if doc.signature is None:
        raise InputError(f"{where} carries no signature, so it cannot be bound to your CI's run; write it with "
                         f"`audit run --sign-key-env {env}`")
    expected = hmac.new(key, canonical(doc), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, doc.signature.value):
        raise InputError(f"{where}: its signature does not verify with the key in {env}: the document was edited "
                         "after it was written, or written with another key")
