"""``credentials.password.hash``: the shapes Okta takes per algorithm, and a sign-in against one.

Fields and limits from the management OpenAPI spec (``PasswordCredentialHash``,
``PasswordCredentialHashAlgorithm``, ``DigestAlgorithm``) and its example
``create-user-with-imported-hashed-password-request``:

* ``BCRYPT``: ``workFactor`` 1-20, ``salt`` the 22 radix-64 characters of the bcrypt salt,
  ``value`` the 31 radix-64 characters of the bcrypt hash;
* ``SHA-512``, ``SHA-256``, ``SHA-1``, ``MD5``: ``value`` the base64 digest of password and salt,
  ``salt`` base64 (optional), ``saltOrder`` ``PREFIX`` or ``POSTFIX`` when there is a salt;
* ``PBKDF2``: base64 ``value`` and ``salt``, ``iterationCount`` >= 4096, ``keySize`` in bytes,
  ``digestAlgorithm`` ``SHA256_HMAC`` or ``SHA512_HMAC``.

A shape that breaks these is 400 E0000001, as Okta answers a bad field. Emulator rules beyond the
spec (Okta's wording and exact checks are not published): the value must decode to the
algorithm's digest size (``keySize`` for PBKDF2). The emulator keeps an accepted hash so that a
sign-in with a password can be checked against it, each algorithm with the library that owns it
(``bcrypt``) or ``hashlib``, independently of the gateway's own hash code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any, Final

import bcrypt

from emulators.okta import errors

__all__ = ["HASH_ALGORITHMS", "check_hash", "hash_matches"]

HASH_ALGORITHMS: Final = frozenset({"BCRYPT", "SHA-512", "SHA-256", "SHA-1", "MD5", "PBKDF2"})
_DIGESTS: Final = {"SHA-512": "sha512", "SHA-256": "sha256", "SHA-1": "sha1", "MD5": "md5"}
_PBKDF2_DIGESTS: Final = {"SHA256_HMAC": "sha256", "SHA512_HMAC": "sha512"}
_RADIX64: Final = re.compile(r"[./A-Za-z0-9]+")
MIN_PBKDF2_ITERATIONS: Final = 4096


def _bad(field: str, cause: str) -> errors.OktaApiError:
    return errors.validation_failed(field, f"{field}: {cause}")


def _integer(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(field, "must be an integer")
    return value


def _base64(body: dict[str, Any], field: str) -> bytes:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise _bad(field, "The field cannot be left blank")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(field, "must be base64-encoded") from None


def check_hash(raw: Any) -> dict[str, Any]:
    """The hash object if Okta would accept it; 400 E0000001 naming the first bad field."""
    if not isinstance(raw, dict):
        raise _bad("hash", "must be an object")
    algorithm = raw.get("algorithm")
    if algorithm not in HASH_ALGORITHMS:
        raise _bad("algorithm", "must be one of " + ", ".join(sorted(HASH_ALGORITHMS)))
    if algorithm == "BCRYPT":
        work_factor = _integer(raw, "workFactor")
        if not 1 <= work_factor <= 20:
            raise _bad("workFactor", "must be between 1 and 20")
        for field, size in (("salt", 22), ("value", 31)):
            text = raw.get(field)
            if not isinstance(text, str) or len(text) != size or not _RADIX64.fullmatch(text):
                raise _bad(field, f"must be {size} radix-64 characters")
    elif algorithm == "PBKDF2":
        value = _base64(raw, "value")
        _base64(raw, "salt")
        if _integer(raw, "iterationCount") < MIN_PBKDF2_ITERATIONS:
            raise _bad("iterationCount", f"must be at least {MIN_PBKDF2_ITERATIONS}")
        key_size = _integer(raw, "keySize")
        if key_size < 1:
            raise _bad("keySize", "must be greater than 0")
        if raw.get("digestAlgorithm") not in _PBKDF2_DIGESTS:
            raise _bad("digestAlgorithm", "must be SHA256_HMAC or SHA512_HMAC")
        if len(value) != key_size:
            raise _bad("value", "must be keySize bytes")
    else:
        value = _base64(raw, "value")
        if len(value) != hashlib.new(_DIGESTS[algorithm]).digest_size:
            raise _bad("value", f"must be a base64 {algorithm} digest")
        if raw.get("salt") is not None:
            _base64(raw, "salt")
            if raw.get("saltOrder") not in ("PREFIX", "POSTFIX"):
                raise _bad("saltOrder", "must be PREFIX or POSTFIX")
    return dict(raw)


def hash_matches(stored: dict[str, Any], password: str) -> bool:
    """Whether `password` is the one an accepted hash object was made from."""
    secret = password.encode("utf-8")
    algorithm = stored["algorithm"]
    if algorithm == "BCRYPT":
        text = f"$2a${stored['workFactor']:02d}${stored['salt']}{stored['value']}"
        try:
            return bcrypt.checkpw(secret[:72], text.encode("ascii"))
        except ValueError:  # a work factor below bcrypt's minimum of 4: nothing can match
            return False
    value = base64.b64decode(stored["value"])
    salt = base64.b64decode(stored["salt"]) if stored.get("salt") else b""
    if algorithm == "PBKDF2":
        derived = hashlib.pbkdf2_hmac(
            _PBKDF2_DIGESTS[stored["digestAlgorithm"]],
            secret,
            salt,
            stored["iterationCount"],
            stored["keySize"],
        )
        return hmac.compare_digest(derived, value)
    data = salt + secret if stored.get("saltOrder") == "PREFIX" else secret + salt
    return hmac.compare_digest(hashlib.new(_DIGESTS[algorithm], data).digest(), value)
