"""One check at each default `max_cost` maximum on this machine, against the 2.5 s hook budget.

Prints, per format, the seconds of one wrong-password check of a row at the default maximum
(best of `--repeat`), the source's estimate from `REFERENCE_SECONDS_PER_UNIT`, and the peak
memory the check added; no pass/fail. Rows are written cheaply (tests/fixtures/make_hash_export).

    .venv/bin/python -m bench.hash_maxima [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

from plugins.password_hashes import (
    DEFAULT_LIMITS,
    REFERENCE_SECONDS_PER_UNIT,
    FirebaseScryptParams,
    StoredHash,
    parse_hash,
)
from tests.fixtures.make_hash_export import (
    argon2_row,
    b64,
    bcrypt_row,
    django_row,
    pbkdf2_row,
    scrypt_row,
    sha_crypt_row,
)

L = DEFAULT_LIMITS
# scrypt N=2**18, r=8, p=1 is 128 * N * r * p = 256 MiB, the default maximum.
SCRYPT_LN = (L.scrypt_memory_bytes // (128 * 8)).bit_length() - 1
ROWS: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    (f"bcrypt cost {L.bcrypt_rounds}", lambda: bcrypt_row("b", L.bcrypt_rounds)),
    (
        f"argon2id m={L.argon2_memory_kib} t={L.argon2_memory_time_kib // L.argon2_memory_kib} p=1",
        lambda: argon2_row(
            "a", L.argon2_memory_kib, L.argon2_memory_time_kib // L.argon2_memory_kib
        ),
    ),
    (
        f"argon2id m={L.argon2_memory_time_kib // L.argon2_time_cost} t={L.argon2_time_cost} "
        f"p={L.argon2_parallelism}",
        lambda: argon2_row(
            "a",
            L.argon2_memory_time_kib // L.argon2_time_cost,
            L.argon2_time_cost,
            L.argon2_parallelism,
        ),
    ),
    (f"scrypt ln={SCRYPT_LN} r=8 p=1", lambda: scrypt_row("s", SCRYPT_LN)),
    *(
        (
            f"pbkdf2 {digest} {L.pbkdf2_iterations}",
            lambda digest=digest, size=size: pbkdf2_row("p", L.pbkdf2_iterations, digest, size),
        )
        for digest, size in (("sha1", 20), ("sha256", 32), ("sha512", 64))
    ),
    (
        f"django_pbkdf2_sha256 {L.pbkdf2_iterations}",
        lambda: django_row("d", "django_pbkdf2_sha256", L.pbkdf2_iterations),
    ),
    *(
        (
            f"{scheme} rounds={L.sha_crypt_rounds}",
            lambda scheme=scheme: sha_crypt_row("c", scheme, L.sha_crypt_rounds),
        )
        for scheme in ("sha256_crypt", "sha512_crypt")
    ),
]


def _firebase() -> tuple[str, StoredHash]:
    """Firebase's scrypt at the schema's own maximum (mem_cost 16, rounds 16: 128 MiB)."""
    params = FirebaseScryptParams(b"k" * 32, b"\x07", 16, 16)
    fields = {"hash": b64(bytes(32)), "algorithm": "firebase_scrypt", "salt": b64(bytes(12))}
    return "firebase_scrypt mem_cost=16 rounds=16", parse_hash(fields, params)


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="checks per format (best kept)")
    args = parser.parse_args()
    cases = [(name, parse_hash(make())) for name, make in ROWS] + [_firebase()]
    print(f"{'format at the default maximum':48} {'check s':>8} {'estimate s':>10} {'+RSS MiB':>9}")
    for name, stored in cases:
        before = _peak_kib()
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            stored.verify("not-the-password")
            best = min(best, time.perf_counter() - started)
        family, units = stored.work()
        estimate = units * REFERENCE_SECONDS_PER_UNIT[family]
        grown = (_peak_kib() - before) / 1024
        print(f"{name:48} {best:8.3f} {estimate:10.3f} {grown:9.0f}")


if __name__ == "__main__":
    main()
