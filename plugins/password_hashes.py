"""Password hash formats of exported directories: parse, verify, make a dummy, map to Okta.

Every format a library owns is checked by that library (libpass, which runs bcrypt through
`bcrypt` and argon2 through `argon2-cffi`); the raw formats (salted SHA/MD5, PBKDF2 from separate
fields) are one `hashlib` call each; Firebase's modified scrypt, which no library has, is
`hashlib.scrypt` followed by AES-256-CTR from `cryptography` (github.com/firebase/scrypt).

Nothing here puts a hash, a salt or a password in a message, a repr or a log record: errors name
the column and what is wrong with it, never its value.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from passlib import hash as passlib_hash
from passlib.utils.handlers import GenericHandler

__all__ = [
    "DEFAULT_LIMITS",
    "GIL_BOUND_SCHEMES",
    "MCF_SCHEMES",
    "RAW_DIGESTS",
    "REFERENCE_SECONDS_PER_UNIT",
    "Cost",
    "CostLimits",
    "FirebaseScryptParams",
    "HashFormatError",
    "StoredHash",
    "cost_problems",
    "firebase_scrypt",
    "okta_import_problem",
    "parse_hash",
]

BCRYPT_MAX_BYTES: Final = 72  # bcrypt only ever reads this many bytes of a password
OKTA_MIN_PBKDF2_ITERATIONS: Final = 4096  # Okta's PasswordCredentialHash.iterationCount
OKTA_MAX_BCRYPT_WORK_FACTOR: Final = 20  # Okta's PasswordCredentialHash.workFactor maximum

# Modular-crypt (self-describing) formats: scheme -> (libpass handler, what the hash starts with).
MCF_SCHEMES: Final[dict[str, tuple[type[GenericHandler], tuple[str, ...]]]] = {
    "bcrypt": (passlib_hash.bcrypt, ("$2a$", "$2b$", "$2y$")),
    "ssha": (passlib_hash.ldap_salted_sha1, ("{SSHA}",)),
    "ssha256": (passlib_hash.ldap_salted_sha256, ("{SSHA256}",)),
    "ssha512": (passlib_hash.ldap_salted_sha512, ("{SSHA512}",)),
    "django_pbkdf2_sha256": (passlib_hash.django_pbkdf2_sha256, ("pbkdf2_sha256$",)),
    "django_pbkdf2_sha1": (passlib_hash.django_pbkdf2_sha1, ("pbkdf2_sha1$",)),
    "sha512_crypt": (passlib_hash.sha512_crypt, ("$6$",)),
    "sha256_crypt": (passlib_hash.sha256_crypt, ("$5$",)),
    "argon2": (passlib_hash.argon2, ("$argon2id$", "$argon2i$", "$argon2d$")),
    "scrypt": (passlib_hash.scrypt, ("$scrypt$",)),
}
# Schemes whose check holds the GIL for all its work: libpass's builtin SHA-crypt is pure Python
# (4 ms at 5,000 rounds, 60 ms at 50,000; glibc's crypt through the `crypt` module holds it too),
# while bcrypt, argon2, scrypt and PBKDF2 run in C libraries that release it. In a thread they
# would stall the event loop, and every answer with it: they are checked in processes.
GIL_BOUND_SCHEMES: Final = frozenset({"sha256_crypt", "sha512_crypt"})
# Plain digests of password and salt: scheme -> (hashlib name, Okta algorithm).
RAW_DIGESTS: Final = {
    "md5": ("md5", "MD5"),
    "sha1": ("sha1", "SHA-1"),
    "sha256": ("sha256", "SHA-256"),
    "sha512": ("sha512", "SHA-512"),
}
# PBKDF2 digests Okta can run (`digestAlgorithm`); SHA-1 is not among them.
OKTA_PBKDF2_DIGESTS: Final = {"sha256": "SHA256_HMAC", "sha512": "SHA512_HMAC"}
_PBKDF2_DIGEST_SIZES: Final = {"sha1": 20, "sha256": 32, "sha512": 64}
_LDAP_OKTA: Final = {"ssha": "SHA-1", "ssha256": "SHA-256", "ssha512": "SHA-512"}
SCHEMES: Final = frozenset({*MCF_SCHEMES, *RAW_DIGESTS, "pbkdf2", "firebase_scrypt"})


@dataclass(frozen=True, slots=True)
class CostLimits:
    """The most one stored hash may cost the gateway to check; each field is a `max_cost` key.

    The defaults keep one check under the hook's 2.5 s budget on one ordinary core (one check
    at each default maximum: `python -m bench.hash_maxima`); a row above them is refused when the
    file is read, so a forgotten row of an old system cannot hold a worker for minutes or days.
    """

    bcrypt_rounds: int = 14  # log2 of the work: each step doubles it
    argon2_memory_kib: int = 256 * 1024  # per check, and per concurrent check
    argon2_time_cost: int = 10
    # Time is memory x passes: each may be at its own maximum, not both at once.
    argon2_memory_time_kib: int = 1024 * 1024
    argon2_parallelism: int = 8  # lanes; argon2-cffi's check runs them on one core here
    scrypt_memory_bytes: int = 256 * 1024 * 1024  # 128 * N * r * p: memory for p=1, time always
    pbkdf2_iterations: int = 2_000_000  # iterations x key blocks, every digest (SHA-512 slowest)
    sha_crypt_rounds: int = 1_000_000


DEFAULT_LIMITS: Final = CostLimits()
# Seconds per unit of `StoredHash.work()` measured on one core of the development machine at
# the default maxima; a source refines them from its own checks (plugins/hashed_export.py).
REFERENCE_SECONDS_PER_UNIT: Final = {
    "bcrypt": 6.7e-5,  # per 2**rounds
    "argon2": 1.6e-6,  # per KiB x pass
    "scrypt": 5.7e-7,  # per N x r x p
    "pbkdf2_sha1": 4.5e-7,  # per iteration x key block
    "pbkdf2_sha256": 5.0e-7,
    "pbkdf2_sha512": 9.1e-7,
    "sha256_crypt": 6.6e-7,  # per round
    "sha512_crypt": 9.1e-7,
    "digest": 1e-6,  # one digest, whatever its size
}


@dataclass(frozen=True, slots=True)
class Cost:
    """One cost parameter of a hash: the `CostLimits` field that bounds it, its value, its words."""

    key: str
    value: int
    what: str  # "bcrypt cost 31": the parameter, never the hash or its salt


class HashFormatError(ValueError):
    """A row's hash fields do not make a hash this module can check (the message has no values)."""


@dataclass(frozen=True, slots=True)
class FirebaseScryptParams:
    """A Firebase project's password hash parameters (Console: Users > Password Hash Parameters)."""

    signer_key: bytes = field(repr=False)
    salt_separator: bytes = field(repr=False)
    rounds: int
    mem_cost: int


def firebase_scrypt(password: bytes, salt: bytes, params: FirebaseScryptParams) -> bytes:
    """Firebase's modified scrypt: scrypt(password, salt + separator), then AES-256-CTR.

    The first 32 bytes of the 64-byte scrypt key encrypt the project's signer key in CTR mode
    with an all-zero counter block; the ciphertext is the stored hash.
    """
    n = 1 << params.mem_cost
    derived = hashlib.scrypt(
        password,
        salt=salt + params.salt_separator,
        n=n,
        r=params.rounds,
        p=1,
        dklen=64,
        maxmem=2 * 128 * params.rounds * n + (1 << 20),
    )
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(params.signer_key) + encryptor.finalize()


class StoredHash(abc.ABC):
    """One user's stored password hash; `verify` is CPU work to run off the event loop."""

    scheme: ClassVar[str] = ""

    def __repr__(self) -> str:
        """The scheme only: a hash never reaches a log line or a traceback."""
        return f"<{type(self).__name__} {self.kind}>"

    @property
    def kind(self) -> str:
        """The canonical scheme name (`bcrypt`, `sha256`, `pbkdf2`, ...)."""
        return self.scheme

    @property
    def holds_gil(self) -> bool:
        """Whether checking it holds the GIL throughout (`GIL_BOUND_SCHEMES`): run it in a process."""
        return self.kind in GIL_BOUND_SCHEMES

    @abc.abstractmethod
    def verify(self, password: str) -> bool:
        """True when `password` is the one this hash was made from (constant-time compare)."""

    @abc.abstractmethod
    def signature(self) -> tuple[Any, ...]:
        """Scheme and cost parameters, without salt or digest: equal signatures, equal cost."""

    @abc.abstractmethod
    def dummy(self) -> StoredHash:
        """A hash of a random password with the same scheme and parameters (same cost)."""

    def okta_hash(self) -> dict[str, Any] | None:
        """Okta's `credentials.password.hash` for this hash, or None when Okta cannot run it."""
        return None

    def costs(self) -> tuple[Cost, ...]:
        """The parameters `CostLimits` bounds (none for a single digest)."""
        return ()

    def work(self) -> tuple[str, int]:
        """A `REFERENCE_SECONDS_PER_UNIT` family and how many of its units one check costs."""
        return "digest", 1

    def okta_refusal(self) -> str:
        """Why Okta cannot import this hash (when `okta_hash` is None), in words without values."""
        return f"Okta cannot import {self.kind} hashes"


class McfHash(StoredHash):
    """A self-describing hash string checked by its libpass handler."""

    def __init__(self, scheme: str, text: str) -> None:
        self._scheme = scheme
        self._handler = MCF_SCHEMES[scheme][0]
        self._text = text
        try:
            self._parsed = self._handler.from_string(text)
        except (ValueError, TypeError):
            raise HashFormatError(f"hash: not a valid {scheme} hash") from None

    @property
    def kind(self) -> str:
        """The scheme name of this hash."""
        return self._scheme

    def verify(self, password: str) -> bool:
        """The handler's own verify (constant-time compare inside libpass)."""
        secret = password.encode("utf-8")
        if self._scheme == "bcrypt":
            # bcrypt reads 72 bytes; the exporting system did too (bcrypt >= 5 raises instead).
            secret = secret[:BCRYPT_MAX_BYTES]
        return bool(self._handler.verify(secret, self._text))

    def _settings(self) -> dict[str, Any]:
        parsed, kwds = self._parsed, self._handler.setting_kwds
        settings = {
            name: getattr(parsed, name)
            for name in ("rounds", "ident", "type", "memory_cost", "parallelism", "block_size")
            if name in kwds and hasattr(parsed, name)
        }
        if "salt_size" in kwds:
            settings["salt_size"] = len(parsed.salt)
        if self._scheme == "argon2":
            settings["digest_size"] = len(parsed.checksum)
        return settings

    def signature(self) -> tuple[Any, ...]:
        """Scheme and the handler's cost settings."""
        return (self._scheme, *sorted(self._settings().items()))

    def dummy(self) -> StoredHash:
        """Hash a random password with the same handler settings."""
        text = self._handler.using(**self._settings()).hash(secrets.token_urlsafe(16))
        return McfHash(self._scheme, text)

    def okta_hash(self) -> dict[str, Any] | None:
        """BCRYPT, SHA-x for LDAP salted SHA (salt after the password), PBKDF2 for Django's."""
        parsed = self._parsed
        if self._scheme == "bcrypt":
            if parsed.rounds > OKTA_MAX_BCRYPT_WORK_FACTOR:
                return None
            return {
                "algorithm": "BCRYPT",
                "workFactor": parsed.rounds,
                "salt": parsed.salt,
                "value": parsed.checksum,
            }
        if self._scheme in _LDAP_OKTA:
            return {
                "algorithm": _LDAP_OKTA[self._scheme],
                "salt": _b64(parsed.salt),
                "saltOrder": "POSTFIX",  # RFC 2307 style: H(password + salt) + salt
                "value": _b64(parsed.checksum),
            }
        if self._scheme == "django_pbkdf2_sha256" and parsed.rounds >= OKTA_MIN_PBKDF2_ITERATIONS:
            key = base64.b64decode(parsed.checksum)
            return {
                "algorithm": "PBKDF2",
                "digestAlgorithm": "SHA256_HMAC",
                "iterationCount": parsed.rounds,
                "keySize": len(key),
                "salt": _b64(parsed.salt.encode("utf-8")),  # Django's salt is text, used as bytes
                "value": _b64(key),
            }
        return None

    def costs(self) -> tuple[Cost, ...]:
        """The cost of bcrypt, argon2 (memory, time, lanes), scrypt, PBKDF2 and SHA-crypt."""
        parsed, scheme = self._parsed, self._scheme
        if scheme == "bcrypt":
            return (Cost("bcrypt_rounds", parsed.rounds, f"bcrypt cost {parsed.rounds}"),)
        if scheme == "argon2":
            memory, passes, lanes = parsed.memory_cost, parsed.rounds, parsed.parallelism
            return (
                Cost("argon2_memory_kib", memory, f"argon2 memory {memory} KiB"),
                Cost("argon2_time_cost", passes, f"argon2 time cost {passes}"),
                Cost(
                    "argon2_memory_time_kib",
                    memory * passes,
                    f"argon2 memory x time {memory} KiB x {passes}",
                ),
                Cost("argon2_parallelism", lanes, f"argon2 parallelism {lanes}"),
            )
        if scheme == "scrypt":
            n, r, p = 1 << parsed.rounds, parsed.block_size, parsed.parallelism
            return (_scrypt_cost(n, r, p),)
        if scheme.startswith("django_pbkdf2"):
            return (_pbkdf2_cost(parsed.rounds, 1),)
        if scheme in GIL_BOUND_SCHEMES:
            rounds = parsed.rounds
            return (Cost("sha_crypt_rounds", rounds, f"SHA-crypt rounds {rounds}"),)
        return ()

    def work(self) -> tuple[str, int]:
        """Units of work of one check, by family."""
        parsed, scheme = self._parsed, self._scheme
        if scheme == "bcrypt":
            return "bcrypt", 1 << parsed.rounds
        if scheme == "argon2":
            return "argon2", parsed.memory_cost * parsed.rounds
        if scheme == "scrypt":
            return "scrypt", (1 << parsed.rounds) * parsed.block_size * parsed.parallelism
        if scheme.startswith("django_pbkdf2"):
            return "pbkdf2_" + scheme.removeprefix("django_pbkdf2_"), parsed.rounds
        if scheme in GIL_BOUND_SCHEMES:
            return scheme, parsed.rounds
        return "digest", 1

    def okta_refusal(self) -> str:
        """Okta refuses bcrypt above 20, Django PBKDF2 below 4096 or with SHA-1, and the rest."""
        rounds = getattr(self._parsed, "rounds", 0)
        if self._scheme == "bcrypt":
            return f"bcrypt cost {rounds} is above Okta's maximum {OKTA_MAX_BCRYPT_WORK_FACTOR}"
        if self._scheme == "django_pbkdf2_sha256":
            return _okta_pbkdf2_refusal("sha256", rounds)
        if self._scheme == "django_pbkdf2_sha1":
            return _okta_pbkdf2_refusal("sha1", rounds)
        return super().okta_refusal()


class SaltedDigest(StoredHash):
    """MD5 / SHA-1 / SHA-256 / SHA-512 of the password with an optional salt before or after it."""

    def __init__(
        self, scheme: str, digest: bytes, salt: bytes, order: Literal["PREFIX", "POSTFIX"]
    ) -> None:
        self._scheme = scheme
        self._name = RAW_DIGESTS[scheme][0]
        self._digest = digest
        self._salt = salt
        self._order = order

    @property
    def kind(self) -> str:
        """The digest name."""
        return self._scheme

    def verify(self, password: str) -> bool:
        """One digest, compared in constant time."""
        secret = password.encode("utf-8")
        data = self._salt + secret if self._order == "PREFIX" else secret + self._salt
        return hmac.compare_digest(hashlib.new(self._name, data).digest(), self._digest)

    def signature(self) -> tuple[Any, ...]:
        """Digest, salt length and order."""
        return (self._scheme, len(self._salt), self._order)

    def dummy(self) -> StoredHash:
        """Random digest and salt of the same sizes."""
        return SaltedDigest(
            self._scheme,
            secrets.token_bytes(len(self._digest)),
            secrets.token_bytes(len(self._salt)),
            self._order,
        )

    def okta_hash(self) -> dict[str, Any] | None:
        """Okta runs all four: base64 value and salt, and the salt's place."""
        body: dict[str, Any] = {"algorithm": RAW_DIGESTS[self._scheme][1]}
        if self._salt:
            body["salt"] = _b64(self._salt)
            body["saltOrder"] = self._order
        body["value"] = _b64(self._digest)
        return body


class Pbkdf2Digest(StoredHash):
    """PBKDF2-HMAC from separate fields: digest, iterations, key size, salt, derived key."""

    scheme = "pbkdf2"

    def __init__(self, digest: str, iterations: int, salt: bytes, key: bytes) -> None:
        self._digest = digest
        self._iterations = iterations
        self._salt = salt
        self._key = key

    def verify(self, password: str) -> bool:
        """PBKDF2 from hashlib (OpenSSL), compared in constant time."""
        derived = hashlib.pbkdf2_hmac(
            self._digest, password.encode("utf-8"), self._salt, self._iterations, len(self._key)
        )
        return hmac.compare_digest(derived, self._key)

    def signature(self) -> tuple[Any, ...]:
        """Digest, iterations, salt and key sizes."""
        return ("pbkdf2", self._digest, self._iterations, len(self._salt), len(self._key))

    def dummy(self) -> StoredHash:
        """Random salt and key of the same sizes."""
        return Pbkdf2Digest(
            self._digest,
            self._iterations,
            secrets.token_bytes(len(self._salt)),
            secrets.token_bytes(len(self._key)),
        )

    def okta_hash(self) -> dict[str, Any] | None:
        """PBKDF2 with HMAC-SHA256/512 and at least 4096 iterations; Okta refuses the rest."""
        digest = OKTA_PBKDF2_DIGESTS.get(self._digest)
        if digest is None or self._iterations < OKTA_MIN_PBKDF2_ITERATIONS:
            return None
        return {
            "algorithm": "PBKDF2",
            "digestAlgorithm": digest,
            "iterationCount": self._iterations,
            "keySize": len(self._key),
            "salt": _b64(self._salt),
            "value": _b64(self._key),
        }

    def _blocks(self) -> int:
        # PBKDF2 runs every iteration once per digest-sized block of the derived key.
        return -(-len(self._key) // _PBKDF2_DIGEST_SIZES[self._digest])

    def costs(self) -> tuple[Cost, ...]:
        """Iterations times key blocks: a 1024-byte SHA-1 key is 52 times the work."""
        return (_pbkdf2_cost(self._iterations, self._blocks()),)

    def work(self) -> tuple[str, int]:
        """Iterations times key blocks, for this digest."""
        return f"pbkdf2_{self._digest}", self._iterations * self._blocks()

    def okta_refusal(self) -> str:
        """SHA-1, or fewer than 4096 iterations."""
        return _okta_pbkdf2_refusal(self._digest, self._iterations)


class FirebaseScryptHash(StoredHash):
    """A Firebase Authentication export's hash: the project's parameters and the user's salt."""

    scheme = "firebase_scrypt"

    def __init__(self, params: FirebaseScryptParams, salt: bytes, value: bytes) -> None:
        self._params = params
        self._salt = salt
        self._value = value

    def verify(self, password: str) -> bool:
        """Firebase's modified scrypt, compared in constant time."""
        computed = firebase_scrypt(password.encode("utf-8"), self._salt, self._params)
        return hmac.compare_digest(computed, self._value)

    def signature(self) -> tuple[Any, ...]:
        """The cost is the project's, the same for every user."""
        return ("firebase_scrypt", self._params.rounds, self._params.mem_cost, len(self._salt))

    def dummy(self) -> StoredHash:
        """A random salt and value under the same project parameters."""
        return FirebaseScryptHash(
            self._params,
            secrets.token_bytes(len(self._salt)),
            secrets.token_bytes(len(self._value)),
        )

    def costs(self) -> tuple[Cost, ...]:
        """The project's scrypt memory (N = 2**mem_cost, r = rounds, p = 1)."""
        return (_scrypt_cost(1 << self._params.mem_cost, self._params.rounds, 1),)

    def work(self) -> tuple[str, int]:
        """N x r of the project's scrypt."""
        return "scrypt", (1 << self._params.mem_cost) * self._params.rounds


def _scrypt_cost(n: int, r: int, p: int) -> Cost:
    return Cost(
        "scrypt_memory_bytes", 128 * n * r * p, f"scrypt memory 128 x N={n} x r={r} x p={p} bytes"
    )


def _pbkdf2_cost(iterations: int, blocks: int) -> Cost:
    what = f"PBKDF2 iterations {iterations}"
    if blocks > 1:
        what += f" x {blocks} key blocks"
    return Cost("pbkdf2_iterations", iterations * blocks, what)


def _okta_pbkdf2_refusal(digest: str, iterations: int) -> str:
    if digest not in OKTA_PBKDF2_DIGESTS:
        return f"Okta cannot import PBKDF2 with HMAC-{digest.upper()} (only SHA-256 and SHA-512)"
    return f"PBKDF2 iterations {iterations} is below Okta's minimum {OKTA_MIN_PBKDF2_ITERATIONS}"


def cost_problems(stored: StoredHash, limits: CostLimits) -> list[str]:
    """Each parameter of `stored` above `limits`, as a sentence naming the key to raise."""
    return [
        f"{cost.what} is above the maximum {getattr(limits, cost.key)} (max_cost.{cost.key})"
        for cost in stored.costs()
        if cost.value > getattr(limits, cost.key)
    ]


def okta_import_problem(stored: StoredHash) -> str | None:
    """Why Okta cannot import `stored` as it is, or None when it can (by Okta's own maxima)."""
    return None if stored.okta_hash() is not None else stored.okta_refusal()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode_b64(column: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HashFormatError(f"{column}: not base64") from None


def _decode_digest(text: str, size: int) -> bytes:
    """A digest of `size` bytes written in hex or in base64 (told apart by length)."""
    if len(text) == 2 * size:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    value = _decode_b64("hash", text)
    if len(value) != size:
        raise HashFormatError(f"hash: must be {size} bytes (hex or base64)")
    return value


def _scheme_of(algorithm: str, text: str) -> str:
    """The canonical scheme from the `algorithm` column, else from the hash's prefix."""
    if algorithm:
        folded = algorithm.strip().lower().replace("-", "")
        folded = {"argon2id": "argon2", "firebase": "firebase_scrypt", "sha": "sha1"}.get(
            folded, folded
        )
        if folded not in SCHEMES:
            shown = algorithm if len(algorithm) <= 32 and algorithm.isprintable() else "?"
            raise HashFormatError(f"algorithm: unknown algorithm {shown!r}")
        if folded in MCF_SCHEMES and not text.startswith(MCF_SCHEMES[folded][1]):
            raise HashFormatError(f"hash: not a {folded} hash")
        return folded
    for scheme, (_, prefixes) in MCF_SCHEMES.items():
        if text.startswith(prefixes):
            return scheme
    raise HashFormatError("algorithm: needed for this hash (it has no recognised prefix)")


def _int_field(fields: Mapping[str, Any], column: str, *, low: int, high: int) -> int | None:
    raw = fields.get(column)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise HashFormatError(f"{column}: must be a whole number")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise HashFormatError(f"{column}: must be a whole number") from None
    if not low <= value <= high:
        raise HashFormatError(f"{column}: must be between {low} and {high}")
    return value


def _text(fields: Mapping[str, Any], column: str) -> str:
    raw = fields.get(column)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise HashFormatError(f"{column}: must be text")
    return raw.strip()


def parse_hash(
    fields: Mapping[str, Any], firebase: FirebaseScryptParams | None = None
) -> StoredHash:
    """Build a stored hash from one row's `hash`, `algorithm`, `salt`, `salt_order`, ... columns."""
    text = _text(fields, "hash")
    if not text:
        raise HashFormatError("hash: missing")
    scheme = _scheme_of(_text(fields, "algorithm"), text)
    if scheme in MCF_SCHEMES:
        return McfHash(scheme, text)
    salt_text = _text(fields, "salt")
    salt = _decode_b64("salt", salt_text) if salt_text else b""
    if scheme in RAW_DIGESTS:
        order = _text(fields, "salt_order").upper()
        if salt and order not in ("PREFIX", "POSTFIX"):
            raise HashFormatError("salt_order: must be PREFIX or POSTFIX with a salt")
        size = hashlib.new(RAW_DIGESTS[scheme][0]).digest_size
        return SaltedDigest(
            scheme, _decode_digest(text, size), salt, "PREFIX" if order == "PREFIX" else "POSTFIX"
        )
    if scheme == "pbkdf2":
        digest = _text(fields, "digest").lower().replace("-", "").removesuffix("_hmac")
        digest = digest.removeprefix("hmac").removeprefix("_")
        if digest not in _PBKDF2_DIGEST_SIZES:
            raise HashFormatError("digest: must be sha1, sha256 or sha512")
        iterations = _int_field(fields, "iterations", low=1, high=100_000_000)
        if iterations is None:
            raise HashFormatError("iterations: missing")
        key_size = _int_field(fields, "key_size", low=8, high=1024)
        if not salt:
            raise HashFormatError("salt: missing")
        key = _decode_digest(text, key_size or _PBKDF2_DIGEST_SIZES[digest])
        return Pbkdf2Digest(digest, iterations, salt, key)
    # firebase_scrypt
    if firebase is None:
        raise HashFormatError("algorithm: firebase_scrypt needs the source's firebase_scrypt keys")
    if not salt:
        raise HashFormatError("salt: missing")
    return FirebaseScryptHash(firebase, salt, _decode_digest(text, len(firebase.signer_key)))
