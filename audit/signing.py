"""Binding a results document to the run that wrote it: an HMAC-SHA256 over the canonical
document, with a key CI holds in an environment variable (``audit run --sign-key-env VAR``,
verified by ``audit gate --sign-key-env VAR``).

Recomputation (:mod:`audit.recompute`) proves that a document's verdicts follow from the
evidence it records; it cannot prove that the evidence came from the model. The signature
can, as far as the key is kept: only a process holding the key (the CI job's own
``audit run``) can write a document that verifies, and any edit after it breaks it.

The canonical form is the document as JSON with sorted keys, no spaces, ASCII only, and
the ``signature`` field left out. Its numbers come in two forms, which ``signature.canonical``
names: form 2 (written now) has every integral number as an integer, as the reader takes
JSON's ``2.0``, so that the float a run wrote and the integer read back sign alike; form 1
(documents signed before the field existed, which lack it) has the numbers as the file
writes them (``2.0``). Either is verified from the file's own text, never from the document
as re-read, so what is checked is exactly what was signed. Relabelling a form-2 signature as
form 1 gains nothing: the bytes then differ wherever the file writes a float like ``2.0``,
and a file changed to match says the same numbers.
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


CANONICAL_FORM = 2


def canonical(doc: Document) -> bytes:
    """The bytes a new signature covers: the document without ``signature``, canonical JSON (form 2)."""
    return _canonical_json(_integral(plain(doc.model_dump(by_alias=True, exclude={"signature"}))))


def _canonical_json(body) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def canonical_of_text(text: str, form: int) -> bytes:
    """The bytes a signature of canonical ``form`` covers, from the text of the signed results.json (already read
    and checked by :func:`reports.read_results`: JSON without NaN, duplicate keys or deep nesting)."""
    body = json.loads(text)
    body.pop("signature", None)
    return _canonical_json(_integral(body) if form >= 2 else body)


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
    doc.signature = Signature(key_env=env, value=value, canonical=CANONICAL_FORM)


def verify(doc: Document, text: str, env: str, where: str) -> None:
    """Refuse (exit 2, one line) a document that carries no signature or one the key in ``env`` does not give;
    ``text`` is the file ``doc`` was read from, in which the signature is checked."""
    key = signing_key(env)
    if doc.signature is None:
        raise InputError(f"{where} carries no signature, so it cannot be bound to your CI's run; write it with "
                         f"`audit run --sign-key-env {env}`")
    expected = hmac.new(key, canonical_of_text(text, doc.signature.canonical), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, doc.signature.value):
        raise InputError(f"{where}: its signature does not verify with the key in {env}: the document was edited "
                         "after it was written, or written with another key")
