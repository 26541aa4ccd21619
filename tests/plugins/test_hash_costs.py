"""Bounded hash costs: `max_cost` and Okta's rules refuse rows; no check overruns its worker.

A row above `max_cost` (or, for an import-only source, outside what Okta imports) is a config
error naming its line, and no check holds a worker past `max_check_seconds`.

Costly rows are cheap to write: a real hash made at a low cost, its cost parameter then rewritten
(the hash bytes no longer match, which no refused row ever needs).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import ConfigError, load_config, parse_config
from gateway.runtime import RUNTIME
from plugins.base import Result
from plugins.hashed_export import HashedExportConfig, HashedExportSource
from tests.conftest import HOOK_PATH, HOOK_SECRET, SecretScan, credential, post_hook
from tests.fixtures.make_hash_export import (
    WRITTEN,
    argon2_row,
    b64,
    bcrypt_row,
    django_row,
    pbkdf2_row,
    row,
    scrypt_row,
    sha_crypt_row,
)
from tests.redis_server import free_port
from tests.serve_process import ServeProcess

COLUMNS = ["username", "hash", "algorithm", "salt", "iterations", "key_size", "digest"]
CHEAP_PASSWORD = "cheap-user-password"


def sha1_row(username: str, password: str = CHEAP_PASSWORD) -> dict[str, Any]:
    """A plain SHA-1 (no cost parameter at all)."""
    return row(username, hash=b64(hashlib.sha1(password.encode()).digest()), algorithm="sha1")


# One row per cost parameter, each above the default maximum, and what check-config says.
COSTLY: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    (
        "bcrypt",
        lambda: bcrypt_row("b@contoso.com", 31),
        "bcrypt cost 31 is above the maximum 14 (max_cost.bcrypt_rounds)",
    ),
    (
        "argon2_memory",
        lambda: argon2_row("am@contoso.com", m=2_097_152, t=1),
        "argon2 memory 2097152 KiB is above the maximum 262144 (max_cost.argon2_memory_kib)",
    ),
    (
        "argon2_time",
        lambda: argon2_row("at@contoso.com", t=100),
        "argon2 time cost 100 is above the maximum 10 (max_cost.argon2_time_cost)",
    ),
    (
        "argon2_memory_time",
        lambda: argon2_row("amt@contoso.com", m=262_144, t=10),
        "argon2 memory x time 262144 KiB x 10 is above the maximum 1048576 "
        "(max_cost.argon2_memory_time_kib)",
    ),
    (
        "argon2_parallelism",
        lambda: argon2_row("ap@contoso.com", p=64),
        "argon2 parallelism 64 is above the maximum 8 (max_cost.argon2_parallelism)",
    ),
    (
        "scrypt",
        lambda: scrypt_row("s@contoso.com", 30),
        "scrypt memory 128 x N=1073741824 x r=8 x p=1 bytes is above the maximum 268435456 "
        "(max_cost.scrypt_memory_bytes)",
    ),
    (
        "pbkdf2_sha256",
        lambda: pbkdf2_row("p256@contoso.com", 100_000_000),
        "PBKDF2 iterations 100000000 is above the maximum 2000000 (max_cost.pbkdf2_iterations)",
    ),
    (
        "pbkdf2_sha1_long_key",
        lambda: pbkdf2_row("p1@contoso.com", 100_000, "sha1", 1024),
        "PBKDF2 iterations 100000 x 52 key blocks is above the maximum 2000000",
    ),
    (
        "django_pbkdf2_sha256",
        lambda: django_row("d256@contoso.com", "django_pbkdf2_sha256", 1_000_000_000),
        "PBKDF2 iterations 1000000000 is above the maximum 2000000",
    ),
    (
        "django_pbkdf2_sha1",
        lambda: django_row("d1@contoso.com", "django_pbkdf2_sha1", 3_000_000),
        "PBKDF2 iterations 3000000 is above the maximum 2000000",
    ),
    (
        "sha512_crypt",
        lambda: sha_crypt_row("c512@contoso.com", "sha512_crypt", 999_999_999),
        "SHA-crypt rounds 999999999 is above the maximum 1000000 (max_cost.sha_crypt_rounds)",
    ),
    (
        "sha256_crypt",
        lambda: sha_crypt_row("c256@contoso.com", "sha256_crypt", 5_000_000),
        "SHA-crypt rounds 5000000 is above the maximum 1000000 (max_cost.sha_crypt_rounds)",
    ),
]
FIREBASE = {"signer_key": b64(b"k" * 32), "salt_separator": "Bw==", "rounds": 16, "mem_cost": 16}


@pytest.fixture(autouse=True)
def _scan_for_written_hashes(secret_scan: SecretScan) -> Iterator[None]:
    """No hash or salt this module writes may appear in a log record or an output."""
    secret_scan.secrets |= {CHEAP_PASSWORD}
    yield
    secret_scan.secrets |= WRITTEN  # the test's own rows too (the scan runs after this)


def write_export(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A CSV export: a header on line 1, then one row per line."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def gateway_yaml(export: Path, *, routed: bool = True, **source_extra: Any) -> str:
    """A config with the export as sources[1] (after a cheap one), routed or import-only."""
    cheap = write_export(export.with_name("cheap.csv"), [sha1_row("cheap@fabrikam.com")])
    routes = [{"match": {"domains": ["fabrikam.com"]}, "sources": ["cheap"]}]
    if routed:
        routes.append({"match": {"domains": ["contoso.com"]}, "sources": ["export"]})
    config = {
        "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
        "sources": [
            {"name": "cheap", "type": "hashed_export", "file": str(cheap)},
            {"name": "export", "type": "hashed_export", "file": str(export), **source_extra},
        ],
        "routes": routes,
    }
    return yaml.safe_dump(config, allow_unicode=True)


def problems_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    return "\n".join(caught.value.lines())


def assert_shows_no_hash(message: str, rows: list[dict[str, Any]]) -> None:
    for written in rows:
        for key in ("hash", "salt"):
            value = str(written.get(key) or "")
            assert not value or value not in message, key
        # Nor any recognisable piece of it (a salt inside an MCF string, say).
        text = str(written["hash"])
        for piece in text.split("$"):
            if len(piece) >= 16:
                assert piece not in message


# -- config errors --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make", "fragment"), COSTLY, ids=[c[0] for c in COSTLY])
def test_a_row_above_a_maximum_is_a_config_error_naming_its_line_not_its_hash(
    tmp_path: Path, name: str, make: Callable[[], dict[str, Any]], fragment: str
) -> None:
    rows = [sha1_row("first@contoso.com"), make()]
    message = problems_of(gateway_yaml(write_export(tmp_path / "export.csv", rows)))
    assert f"sources[1].file: line 3: {fragment}" in message, message
    assert "line 2" not in message
    assert_shows_no_hash(message, rows)


def test_a_firebase_project_above_the_scrypt_maximum_is_refused_on_each_line(
    tmp_path: Path,
) -> None:
    rows = [
        row(f"f{i}@contoso.com", hash=b64(bytes(32)), algorithm="firebase_scrypt", salt="c2FsdA==")
        for i in range(2)
    ]
    text = gateway_yaml(
        write_export(tmp_path / "export.csv", rows),
        firebase_scrypt=FIREBASE,
        max_cost={"scrypt_memory_bytes": 1024 * 1024},
    )
    message = problems_of(text)
    assert_shows_no_hash(message, rows)
    for line in (2, 3):
        assert (
            f"sources[1].file: line {line}: scrypt memory 128 x N=65536 x r=16 x p=1 bytes is "
            "above the maximum 1048576 (max_cost.scrypt_memory_bytes)"
        ) in message


def test_every_costly_row_is_reported_not_only_the_first(tmp_path: Path) -> None:
    rows = [make() for _, make, _ in COSTLY]
    message = problems_of(gateway_yaml(write_export(tmp_path / "export.csv", rows)))
    for line, (_, _, fragment) in enumerate(COSTLY, start=2):
        assert f"line {line}: {fragment}" in message
    assert_shows_no_hash(message, rows)


def test_max_cost_raises_a_maximum_for_one_source(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.csv", [bcrypt_row("b@contoso.com", 15)])
    assert "max_cost.bcrypt_rounds" in problems_of(gateway_yaml(export))
    config = parse_config(gateway_yaml(export, max_cost={"bcrypt_rounds": 15}), env={})
    assert config.sources[1].name == "export"


def test_max_cost_rejects_unknown_keys(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.csv", [sha1_row("a@contoso.com")])
    message = problems_of(gateway_yaml(export, max_cost={"bcrypt_cost": 12}))
    assert "sources[1].max_cost.bcrypt_cost: unknown key" in message


def test_check_config_refuses_costly_rows_without_printing_them(tmp_path: Path) -> None:
    import subprocess

    rows = [sha1_row("ok@contoso.com"), *(make() for _, make, _ in COSTLY)]
    path = tmp_path / "gateway.yaml"
    path.write_text(gateway_yaml(write_export(tmp_path / "export.csv", rows)), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    for line, (_, _, fragment) in enumerate(COSTLY, start=3):
        assert f"sources[1].file: line {line}: {fragment}" in output, output
    assert_shows_no_hash(output, rows)


async def test_gateway_serve_refuses_to_start_with_a_costlyrow(
    tmp_path: Path, secret_scan: SecretScan
) -> None:
    rows = [sha1_row("ok@contoso.com"), bcrypt_row("b@contoso.com", 31)]
    config = yaml.safe_load(gateway_yaml(write_export(tmp_path / "export.csv", rows)))
    port = free_port()
    config["server"] = {"host": "127.0.0.1", "port": port}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    process = ServeProcess(path, f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(AssertionError, match="exited at start-up"):
            await process.start()
        assert await process.wait() != 0
        output = process.output()
        assert "sources[1].file: line 3: bcrypt cost 31 is above the maximum 14" in output
        assert_shows_no_hash(output, rows)
    finally:
        await process.stop()
        secret_scan.add_output(process.output())


async def test_a_reload_with_a_costly_row_is_refused_and_the_running_file_stays(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", [sha1_row("a@contoso.com")])
    path = tmp_path / "gateway.yaml"
    path.write_text(gateway_yaml(export), encoding="utf-8")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(load_config(path), config_path=str(path))
    )
    costly = argon2_row("huge@contoso.com", m=2_097_152, t=3, p=4)
    write_export(export, [sha1_row("a@contoso.com"), costly])
    result = await client.app[RUNTIME].reload()
    assert not result.ok
    assert any(
        "sources[1].file: line 3: argon2 memory 2097152 KiB is above the maximum 262144" in problem
        for problem in result.problems
    ), result.problems
    assert_shows_no_hash("\n".join(result.problems), [costly])
    _, body = await post_hook(client, "a@contoso.com", CHEAP_PASSWORD)
    assert credential(body) == "VERIFIED"


# -- import-only sources: Okta's rules ------------------------------------------------------


def test_an_import_only_source_takes_bcrypt_up_to_okta_s_maximum_20(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.csv", [bcrypt_row("b@contoso.com", 20)])
    config = parse_config(gateway_yaml(export, routed=False), env={})
    assert config.sources[1].name == "export"
    # The same file under a route is the gateway's to check: its own maximum applies.
    assert "bcrypt cost 20 is above the maximum 14" in problems_of(gateway_yaml(export))


def test_an_import_only_source_refuses_bcrypt_21(tmp_path: Path) -> None:
    rows = [bcrypt_row("b@contoso.com", 20), bcrypt_row("c@contoso.com", 21)]
    message = problems_of(gateway_yaml(write_export(tmp_path / "e.csv", rows), routed=False))
    assert "sources[1].file: line 3: bcrypt cost 21 is above Okta's maximum 20" in message
    assert "line 2" not in message
    assert_shows_no_hash(message, rows)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: argon2_row("a@contoso.com"), "Okta cannot import argon2 hashes"),
        (lambda: scrypt_row("s@contoso.com", 4), "Okta cannot import scrypt hashes"),
        (
            lambda: sha_crypt_row("c@contoso.com", "sha512_crypt", 5000),
            "Okta cannot import sha512_crypt hashes",
        ),
        (
            lambda: pbkdf2_row("p@contoso.com", 1000),
            "PBKDF2 iterations 1000 is below Okta's minimum 4096",
        ),
        (
            lambda: pbkdf2_row("p@contoso.com", 10_000, "sha1", 20),
            "Okta cannot import PBKDF2 with HMAC-SHA1",
        ),
    ],
    ids=["argon2", "scrypt", "sha512_crypt", "pbkdf2_few_iterations", "pbkdf2_sha1"],
)
def test_an_import_only_source_refuses_rows_okta_cannot_import(
    tmp_path: Path, make: Callable[[], dict[str, Any]], fragment: str
) -> None:
    """No route would ever check them: imported with the hook, such users could never sign in."""
    rows = [make()]
    message = problems_of(gateway_yaml(write_export(tmp_path / "e.csv", rows), routed=False))
    assert f"sources[1].file: line 2: {fragment}" in message, message
    assert "add the source to a route or remove the row" in message
    assert_shows_no_hash(message, rows)


def test_a_shadow_source_is_checked_by_the_gateway_so_its_maxima_apply(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.csv", [bcrypt_row("b@contoso.com", 20)])
    config = yaml.safe_load(gateway_yaml(export, routed=False))
    config["routes"][0]["shadow"] = {"source": "export"}
    message = problems_of(yaml.safe_dump(config))
    assert "bcrypt cost 20 is above the maximum 14 (max_cost.bcrypt_rounds)" in message


async def test_an_import_only_source_starts_without_checking_any_hash(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.csv", [bcrypt_row("b@contoso.com", 20)])
    config = parse_config(gateway_yaml(export, routed=False), env={})
    source = HashedExportSource(config.sources[1])
    # A bcrypt-20 dummy would take minutes to build: an import-only source builds none.
    await asyncio.wait_for(source.start(), 10)
    try:
        assert source.ready
        verdict = await source.verify("b@contoso.com", "x")
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.UNAVAILABLE,
            "import_only",
            False,
        )
    finally:
        await source.close()


# -- no check holds a worker past max_check_seconds -----------------------------------------


def source_of(path: Path, **extra: Any) -> HashedExportConfig:
    raw = {"name": "export", "type": "hashed_export", "file": str(path), **extra}
    return HashedExportConfig.model_validate(raw)


async def test_a_thread_check_that_would_overrun_is_not_started_and_others_are_checked(
    tmp_path: Path,
) -> None:
    """A bcrypt-17 row (~9 s here) with the maximum raised: estimated first, never given the thread."""
    rows = [bcrypt_row(f"u{i}@contoso.com", 4, CHEAP_PASSWORD) for i in range(3)]
    rows.append(bcrypt_row("heavy@contoso.com", 17))
    config = source_of(
        write_export(tmp_path / "e.csv", rows),
        workers=1,
        max_wait_seconds=0.5,
        max_check_seconds=1.0,
        max_cost={"bcrypt_rounds": 17},
    )
    source = HashedExportSource(config)
    await source.start()
    try:
        heavy = [source.verify("heavy@contoso.com", f"guess-{i}") for i in range(3)]
        others = [source.verify(f"u{i % 3}@contoso.com", CHEAP_PASSWORD) for i in range(6)]
        verdicts = await asyncio.wait_for(asyncio.gather(*heavy, *others), 30)
        assert {(v.result, v.reason, v.sent) for v in verdicts[:3]} == {
            (Result.UNAVAILABLE, "too_costly", False)
        }
        assert all(v.verified for v in verdicts[3:]), verdicts[3:]
        assert source._running == 0
    finally:
        await source.close()


async def test_a_process_check_that_overruns_is_killed_and_other_users_are_checked_soon(
    tmp_path: Path,
) -> None:
    """SHA-crypt of 50M rounds (~45 s) with the maximum raised: its process is replaced."""
    rows = [
        sha_crypt_row(f"u{i}@contoso.com", "sha512_crypt", 1000, CHEAP_PASSWORD, made_at=1000)
        for i in range(3)
    ]
    rows.append(sha_crypt_row("heavy@contoso.com", "sha512_crypt", 50_000_000))
    config = source_of(
        write_export(tmp_path / "e.csv", rows),
        workers=1,
        max_wait_seconds=0.5,
        max_check_seconds=0.5,
        max_cost={"sha_crypt_rounds": 50_000_000},
    )
    source = HashedExportSource(config)
    await source.start()
    try:
        before = {child.pid for child in multiprocessing.active_children()}
        heavy = asyncio.ensure_future(source.verify("heavy@contoso.com", "guess"))
        await asyncio.sleep(0)  # it takes the one worker first
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20  # generous: unbroken, the heavy check holds it ~45 s
        answers = []
        while True:
            verdict = await source.verify("u1@contoso.com", CHEAP_PASSWORD)
            answers.append(verdict)
            if verdict.verified or loop.time() > deadline:
                break
        assert answers[-1].verified, answers
        # Meanwhile the others were shed (unavailable, given back), never an error or a denial.
        assert all((v.result, v.reason) == (Result.UNAVAILABLE, "overloaded") for v in answers[:-1])
        verdict = await asyncio.wait_for(heavy, 5)
        assert (verdict.result, verdict.reason, verdict.sent) == (
            Result.UNAVAILABLE,
            "too_costly",
            False,
        )
        # The process that ran it is gone, not left computing.
        alive = {child.pid for child in multiprocessing.active_children()}
        assert before - alive, "the overrunning worker process is still alive"
        assert source._running == 0
    finally:
        await source.close()
