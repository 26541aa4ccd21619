"""`type: hashed_export`: every format, wrong and unknown users, bad files, Unicode, load shedding."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from emulators.demo import okta_payload
from gateway.app import METRICS, create_app
from gateway.config import ConfigError, load_config, parse_config
from gateway.runtime import RUNTIME
from plugins.base import Result
from plugins.hashed_export import HashedExportConfig, HashedExportSource
from plugins.password_hashes import FirebaseScryptParams, firebase_scrypt
from tests.conftest import HOOK_PATH, HOOK_SECRET, SecretScan, credential, post_hook
from tests.fixtures.make_hash_export import FIREBASE_HASH, FIREBASE_SALT, PASSWORDS

FIXTURES = Path(__file__).parent.parent / "fixtures"
CSV_FILE = FIXTURES / "hash_export.csv"
JSONL_FILE = FIXTURES / "hash_export.jsonl"
# Firebase's published sample project parameters (github.com/firebase/scrypt, README).
FIREBASE = {
    "signer_key": "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==",
    "salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}
with CSV_FILE.open(encoding="utf-8", newline="") as _handle:
    ROWS = list(csv.DictReader(_handle))


@pytest.fixture(autouse=True)
def _scan_for_fixture_secrets(secret_scan: SecretScan) -> None:
    """Every password and hash of the fixture must stay out of logs and messages."""
    secret_scan.secrets |= set(PASSWORDS.values())
    secret_scan.secrets |= {row["hash"] for row in ROWS}
    secret_scan.secrets |= {row["salt"] for row in ROWS if len(row["salt"]) >= 8}


def source_config(path: Path | str = CSV_FILE, **extra: Any) -> HashedExportConfig:
    raw = {"name": "export", "type": "hashed_export", "file": str(path), **extra}
    if "firebase_scrypt" not in extra:
        raw["firebase_scrypt"] = FIREBASE
    return HashedExportConfig.model_validate(raw)


@pytest.fixture
async def source() -> AsyncIterator[HashedExportSource]:
    running = HashedExportSource(source_config())
    await running.start()
    try:
        yield running
    finally:
        await running.close()


async def started(config: HashedExportConfig) -> HashedExportSource:
    running = HashedExportSource(config)
    await running.start()
    return running


# -- every format: right, wrong, unknown ----------------------------------------------------


@pytest.mark.parametrize("username", list(PASSWORDS))
async def test_right_password_is_verified(source: HashedExportSource, username: str) -> None:
    verdict = await source.verify(username, PASSWORDS[username])
    assert (verdict.result, verdict.reason) == (Result.VERIFIED, "ok")


@pytest.mark.parametrize("username", list(PASSWORDS))
async def test_wrong_password_is_denied(source: HashedExportSource, username: str) -> None:
    verdict = await source.verify(username, PASSWORDS[username] + "!")
    assert (verdict.result, verdict.reason) == (Result.DENIED, "wrong_password")
    assert not verdict.unknown_user


@pytest.mark.parametrize("row", ROWS, ids=[r["username"] for r in ROWS])
async def test_unknown_user_is_checked_against_a_dummy_of_the_files_format(
    row: dict[str, str], tmp_path: Path
) -> None:
    """A file of one format: its unknown users cost a hash of that format and parameters."""
    path = tmp_path / "one.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(row))
        writer.writeheader()
        writer.writerow(row)
    running = await started(source_config(path))
    try:
        checked: list[object] = []
        dummy = running._dummy
        assert dummy is not None
        stored = running.export.users[0].stored
        assert dummy.signature() == stored.signature()
        pool_for = running._pool_for

        def spy(submitted: Any) -> Any:  # what goes to a worker thread or process
            checked.append(submitted)
            return pool_for(submitted)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(running, "_pool_for", spy)
            verdict = await running.verify("nobody@contoso.com", PASSWORDS[row["username"]])
        assert (verdict.result, verdict.reason, verdict.unknown_user) == (
            Result.DENIED,
            "unknown_user",
            True,
        )
        # The work was sent, for the dummy only.
        assert len(checked) == 1 and checked[0] is dummy
    finally:
        await running.close()


async def test_the_dummy_follows_the_most_common_format(source: HashedExportSource) -> None:
    assert source._dummy is not None
    assert source._dummy.kind == "bcrypt"  # three bcrypt rows with the same cost
    assert source._dummy.signature() == source.export.find("bcrypt@contoso.com").stored.signature()  # type: ignore[union-attr]


async def test_jsonl_file_verifies_like_csv() -> None:
    running = await started(source_config(JSONL_FILE))
    try:
        for username, password in PASSWORDS.items():
            assert (await running.verify(username, password)).verified, username
    finally:
        await running.close()


def test_firebase_published_test_vector() -> None:
    params = FirebaseScryptParams(
        base64.b64decode(FIREBASE["signer_key"]),  # type: ignore[arg-type]
        base64.b64decode(FIREBASE["salt_separator"]),  # type: ignore[arg-type]
        8,
        14,
    )
    digest = firebase_scrypt(b"user1password", base64.b64decode(FIREBASE_SALT), params)
    assert base64.b64encode(digest).decode() == FIREBASE_HASH


def test_firebase_rows_need_the_project_parameters(tmp_path: Path) -> None:
    path = tmp_path / "fb.csv"
    path.write_text(
        f"username,hash,algorithm,salt\nf@contoso.com,{FIREBASE_HASH},firebase_scrypt,{FIREBASE_SALT}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="line 2: algorithm: firebase_scrypt needs"):
        HashedExportConfig.model_validate({"name": "x", "type": "hashed_export", "file": str(path)})


# -- usernames ------------------------------------------------------------------------------


async def test_ascii_case_of_a_username_does_not_matter(source: HashedExportSource) -> None:
    verdict = await source.verify("BCRYPT@Contoso.COM", PASSWORDS["bcrypt@contoso.com"])
    assert verdict.verified


@pytest.mark.parametrize(
    ("typed", "password_of"),
    [
        ("\u212aevin@contoso.com", "kevin@contoso.com"),  # KELVIN SIGN for K
        ("strasse@contoso.com", "straße@contoso.com"),  # casefold would merge these two
        ("STRASSE@contoso.com", "straße@contoso.com"),
        ("e\u0301lodie@contoso.com", "élodie@contoso.com"),  # NFD of the NFC name in the file
        ("ÉLODIE@contoso.com", "élodie@contoso.com"),  # non-ASCII case is not folded
        ("\uff42crypt@contoso.com", "bcrypt@contoso.com"),  # FULLWIDTH LATIN SMALL LETTER B
        (" bcrypt@contoso.com", "bcrypt@contoso.com"),
    ],
)
async def test_look_alike_usernames_never_reach_another_users_hash(
    source: HashedExportSource, typed: str, password_of: str
) -> None:
    verdict = await source.verify(typed, PASSWORDS[password_of])
    assert not verdict.verified


async def test_strasse_and_strasse_with_eszett_are_two_users(source: HashedExportSource) -> None:
    assert (await source.verify("straße@contoso.com", PASSWORDS["straße@contoso.com"])).verified
    assert (await source.verify("strasse@contoso.com", PASSWORDS["strasse@contoso.com"])).verified
    wrong = await source.verify("strasse@contoso.com", PASSWORDS["straße@contoso.com"])
    assert wrong.reason == "wrong_password"


async def test_exact_mode_does_not_fold_ascii_case() -> None:
    running = await started(source_config(usernames="exact"))
    try:
        folded = await running.verify("BCRYPT@contoso.com", PASSWORDS["bcrypt@contoso.com"])
        assert folded.reason == "unknown_user"
    finally:
        await running.close()


def test_a_password_with_a_lone_surrogate_is_refused_before_any_work(
    source: HashedExportSource,
) -> None:
    assert source.unsupported_input("bcrypt@contoso.com", "pass\ud800") == "unsupported_characters"
    assert source.unsupported_input("bcrypt@contoso.com", "pässwörd 😀") is None


async def test_bcrypt_reads_72_bytes_like_the_system_that_made_the_hash(tmp_path: Path) -> None:
    import bcrypt

    long_password = "ä" * 40  # 80 bytes of UTF-8
    made = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4)).decode()
    path = tmp_path / "long.csv"
    path.write_text(f"username,hash\nlong@contoso.com,{made}\n", encoding="utf-8")
    running = await started(source_config(path))
    try:
        assert (await running.verify("long@contoso.com", long_password)).verified
    finally:
        await running.close()


# -- bad files ------------------------------------------------------------------------------

BAD_ROWS = [
    ("nohash@contoso.com,,,,,", "line 2: hash: missing"),
    ("badsalt@contoso.com,00112233445566778899aabbccddeeff,md5,%%%,PREFIX,", "line 3: salt: not base64"),
    ("order@contoso.com,00112233445566778899aabbccddeeff,md5,c2FsdA==,MIDDLE,", "line 4: salt_order"),
    ("short@contoso.com,0011,sha256,,,", "line 5: hash: must be 32 bytes"),
    ("weird@contoso.com,abc,whirlpool,,,", "line 6: algorithm: unknown algorithm 'whirlpool'"),
    ("plain@contoso.com,plaintext-not-a-hash,,,,", "line 7: algorithm: needed for this hash"),
    ("badbcrypt@contoso.com,$2b$04$tooshort,,,,", "line 8: hash: not a valid bcrypt hash"),
    ("iter@contoso.com,AAAA,pbkdf2,c2FsdA==,,", "line 9: digest: must be sha1, sha256 or sha512"),
    (",00112233445566778899aabbccddeeff,md5,,,", "line 10: username: missing"),
    ("md5@contoso.com,00112233445566778899aabbccddeeff,md5,,,", "line 11: username: duplicate of line 12"),
]  # fmt: skip


def test_bad_rows_are_config_errors_naming_their_lines(tmp_path: Path) -> None:
    lines = ["username,hash,algorithm,salt,salt_order,extra", *(row for row, _ in BAD_ROWS)]
    # The duplicate: the same username (ASCII case aside) on a later line.
    lines.insert(-1, "MD5@contoso.com,00112233445566778899aabbccddeeff,md5,,,")
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_config(_gateway_yaml(path), env={})
    message = str(caught.value)
    expected = [m for _, m in BAD_ROWS[:-1]] + ["line 12: username: duplicate of line 11"]
    for fragment in expected:
        assert f"sources[0].file: {fragment}" in message, (fragment, message)
    for secret in ("00112233445566778899aabbccddeeff", "c2FsdA==", "plaintext-not-a-hash"):
        assert secret not in message  # never a hash or a salt in a message


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("x.txt", "username,hash\n", "name it .csv or .jsonl"),
        ("x.csv", "user,password\na,b\n", "line 1: the header has no username or hash column"),
        ("x.csv", "username,hash\n", "has no users"),
        ("x.csv", 'username,hash\n"a@contoso.com,x\n', "not valid CSV"),
        ("x.jsonl", '{"username": "a@contoso.com", "hash": "x"\n', "line 1: not JSON"),
        ("x.jsonl", '\n["a", "b"]\n', "line 2: not a JSON object"),
        ("x.jsonl", '{"username": 7, "hash": "x"}\n', "line 1: username: must be text"),
        ("x.csv", "username,hash\n a@contoso.com,x\n", "username: has spaces"),
    ],
)
def test_bad_files_are_config_errors(
    tmp_path: Path, name: str, content: str, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="sources\\[0\\].file: .*" + fragment.replace(".", "\\.")):
        parse_config(_gateway_yaml(path), env={})


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"username,hash\nok@contoso.com,x\nr\xe9my@contoso.com,y\n")
    with pytest.raises(ConfigError, match="line 3: not UTF-8 text"):
        parse_config(_gateway_yaml(path), env={})


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.file: cannot read"):
        parse_config(_gateway_yaml(tmp_path / "absent.csv"), env={})


def test_many_bad_rows_are_summed_up(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text(
        "username,hash\n" + "".join(f"u{i}@contoso.com,nothing\n" for i in range(50)),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(_gateway_yaml(path), env={})
    assert "and 30 more bad rows" in str(caught.value)


def test_the_repr_of_a_loaded_hash_shows_no_hash(source: HashedExportSource) -> None:
    user = source.export.find("bcrypt@contoso.com")
    assert user is not None
    shown = f"{user!r} {user.stored!r} {source.settings!r}"
    assert "$2b$" not in shown
    assert FIREBASE["signer_key"] not in shown


# -- load shedding --------------------------------------------------------------------------


def _slow_file(tmp_path: Path, users: int = 3) -> Path:
    """Users whose PBKDF2 hash takes a noticeable moment (~20-40 ms) to check."""
    path = tmp_path / "slow.csv"
    rows = ["username,hash,algorithm,salt,iterations,digest"]
    for i in range(users):
        key = hashlib.pbkdf2_hmac("sha256", f"pw{i}".encode(), b"salt-salt", 60_000, 32)
        rows.append(
            f"u{i}@contoso.com,{base64.b64encode(key).decode()},pbkdf2,"
            f"{base64.b64encode(b'salt-salt').decode()},60000,sha256"
        )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


async def test_many_verifications_at_once_answer_in_time_or_say_overloaded(
    tmp_path: Path,
) -> None:
    running = await started(
        source_config(_slow_file(tmp_path), workers=1, max_queue=4, max_wait_seconds=0.3)
    )
    try:
        loop = asyncio.get_running_loop()
        begun = loop.time()

        async def one(i: int) -> tuple[str, float]:
            verdict = await running.verify(f"u{i % 3}@contoso.com", f"pw{i % 3}")
            return verdict.reason, loop.time() - begun

        answers = await asyncio.gather(*(one(i) for i in range(60)))
        reasons = [reason for reason, _ in answers]
        assert set(reasons) == {"ok", "overloaded"}
        assert reasons.count("overloaded") >= 30
        # Nobody waited for a thread much past max_wait_seconds (generous bound, not a timing).
        assert max(seconds for _, seconds in answers) < 2.5
    finally:
        await running.close()


async def test_an_overloaded_verdict_gives_the_attempt_back(tmp_path: Path) -> None:
    running = await started(
        source_config(_slow_file(tmp_path), workers=1, max_queue=0, max_wait_seconds=0.05)
    )
    try:
        verdicts = await asyncio.gather(
            *(running.verify("u0@contoso.com", "pw0") for _ in range(10))
        )
        shed = [v for v in verdicts if v.reason == "overloaded"]
        assert shed and all(v.result is Result.UNAVAILABLE and not v.sent for v in shed)
        assert "overloaded" not in running.outage_reasons  # load never opens the breaker
    finally:
        await running.close()


async def test_a_caller_that_gives_up_keeps_the_thread_counted_until_the_work_ends(
    tmp_path: Path,
) -> None:
    running = await started(source_config(_slow_file(tmp_path), workers=1))
    release = threading.Event()
    try:
        user = running.export.find("u0@contoso.com")
        assert user is not None

        def blocked(password: str) -> bool:
            release.wait(5)
            return False

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(user.stored, "verify", blocked)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await running.verify("u0@contoso.com", "pw0")
            assert running._running == 1  # the thread still works on the abandoned call
            shed = await running.verify("u1@contoso.com", "pw1")
            release.set()
        assert shed.reason == "overloaded" or shed.verified
        for _ in range(100):
            if running._running == 0:
                break
            await asyncio.sleep(0.01)
        assert running._running == 0
        assert (await running.verify("u1@contoso.com", "pw1")).verified
    finally:
        release.set()
        await running.close()


# -- through the gateway --------------------------------------------------------------------


def _gateway_yaml(path: Path, **source_extra: Any) -> str:
    config: dict[str, Any] = {
        "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
        "budget_seconds": 2.0,
        "sources": [
            {
                "name": "export",
                "type": "hashed_export",
                "file": str(path),
                "firebase_scrypt": FIREBASE,
                **source_extra,
            }
        ],
        "routes": [{"match": {"domains": ["contoso.com"]}, "sources": ["export"]}],
        "rate_limits": {
            "per_username": {"failures": 1000, "window_seconds": 60},
            "per_ip": {"failures": 100_000, "window_seconds": 60},
        },
        "logging": {"level": "debug", "usernames": "hash"},
    }
    return yaml.safe_dump(config, allow_unicode=True)


@pytest.fixture
def gateway_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gateway.yaml"
    path.write_text(_gateway_yaml(CSV_FILE), encoding="utf-8")
    yield path


async def test_hook_answers_verified_and_unverified_through_the_gateway(
    aiohttp_client: Any, gateway_file: Path
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(load_config(gateway_file), config_path=str(gateway_file))
    )
    status, body = await post_hook(client, "argon2@contoso.com", PASSWORDS["argon2@contoso.com"])
    assert (status, credential(body)) == (200, "VERIFIED")
    status, body = await post_hook(client, "argon2@contoso.com", "nope")
    assert (status, credential(body)) == (200, "UNVERIFIED")
    status, body = await post_hook(client, "ghost@contoso.com", "nope")
    assert (status, credential(body)) == (200, "UNVERIFIED")


async def test_a_flood_of_hook_calls_stays_within_the_budget(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        _gateway_yaml(_slow_file(tmp_path), workers=1, max_queue=8, max_wait_seconds=0.5),
        encoding="utf-8",
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(load_config(path)))
    loop = asyncio.get_running_loop()

    async def one(i: int) -> tuple[int, str, float]:
        started_at = loop.time()
        status, body = await post_hook(client, f"u{i % 3}@contoso.com", f"pw{i % 3}-{i}")
        return status, credential(body), loop.time() - started_at

    answers = await asyncio.gather(*(one(i) for i in range(80)))
    assert {status for status, _, _ in answers} == {200}
    assert {value for _, value, _ in answers} == {"UNVERIFIED"}
    # Every answer came before Okta's 3 s (a generous bound), and the source shed the excess
    # itself, saying so, instead of letting calls run into the budget's timeout.
    assert max(seconds for _, _, seconds in answers) < 3.0
    registry = client.server.app[METRICS].registry
    errors = "gateway_upstream_errors_total"
    assert (registry.get_sample_value(errors, {"source": "export", "code": "overloaded"}) or 0) > 0
    assert not registry.get_sample_value(errors, {"source": "export", "code": "timeout"})


async def test_a_changed_file_is_read_again_on_reload(aiohttp_client: Any, tmp_path: Path) -> None:
    export = tmp_path / "users.csv"
    export.write_text(CSV_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    path = tmp_path / "gateway.yaml"
    path.write_text(_gateway_yaml(export), encoding="utf-8")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(load_config(path), config_path=str(path))
    )
    runtime = client.app[RUNTIME]
    new_hash = base64.b64encode(hashlib.sha1(b"new-password-after-reload").digest()).decode()
    with export.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow(["added@contoso.com", new_hash, "sha1"] + [""] * 9)
    result = await runtime.reload()
    assert result.ok and result.replaced == ("export",)
    _, body = await post_hook(client, "added@contoso.com", "new-password-after-reload")
    assert credential(body) == "VERIFIED"
    # A broken file is refused and the running one stays.
    with export.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow(["broken@contoso.com", "not-a-hash"] + [""] * 10)
    failed = await runtime.reload()
    assert not failed.ok and any("line 26" in problem for problem in failed.problems)
    _, body = await post_hook(client, "added@contoso.com", "new-password-after-reload")
    assert credential(body) == "VERIFIED"


def test_jsonl_fixture_matches_the_csv() -> None:
    lines = [json.loads(line) for line in JSONL_FILE.read_text(encoding="utf-8").splitlines()]
    assert [row["username"] for row in lines] == [row["username"] for row in ROWS]


async def test_sha_crypt_goes_to_worker_processes_and_the_rest_stays_in_threads(
    tmp_path: Path,
) -> None:
    """SHA-crypt holds the GIL for its whole check (pure Python): it must not run in a thread."""
    by_user = {row["username"]: row for row in ROWS}
    path = tmp_path / "mixed.csv"
    picked = ["sha512crypt@contoso.com", "sha256crypt@contoso.com", "bcrypt@contoso.com"]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(ROWS[0]))
        writer.writeheader()
        writer.writerows(by_user[name] for name in picked)
    running = await started(source_config(path))
    try:
        sent: list[tuple[str, str]] = []
        pool_for = running._pool_for

        def spy(stored: Any) -> Any:
            pool = pool_for(stored)
            sent.append((stored.kind, type(pool).__name__))
            return pool

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(running, "_pool_for", spy)
            for name in picked:
                assert (await running.verify(name, PASSWORDS[name])).verified
                wrong = await running.verify(name, PASSWORDS[name] + "x")
                assert (wrong.result, wrong.reason) == (Result.DENIED, "wrong_password")
        assert sorted(set(sent)) == [
            ("bcrypt", "ThreadPoolExecutor"),
            ("sha256_crypt", "ProcessPoolExecutor"),
            ("sha512_crypt", "ProcessPoolExecutor"),
        ]
    finally:
        await running.close()


async def test_a_file_without_sha_crypt_starts_no_process(tmp_path: Path) -> None:
    running = await started(source_config(_slow_file(tmp_path)))
    try:
        assert running._processes is None
        assert (await running.verify("u0@contoso.com", "pw0")).verified
    finally:
        await running.close()


async def test_gateway_serve_checks_sha_crypt_in_worker_processes(
    tmp_path: Path, secret_scan: SecretScan
) -> None:
    """`python -m gateway serve` checks SHA-crypt in spawned workers, then stops on SIGTERM."""
    import signal

    import aiohttp

    from tests.redis_server import free_port
    from tests.serve_process import ServeProcess

    config = yaml.safe_load(_gateway_yaml(CSV_FILE))
    port = free_port()
    config["server"] = {"host": "127.0.0.1", "port": port}
    config["logging"] = {"level": "info", "usernames": "hash"}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    process = ServeProcess(path, f"http://127.0.0.1:{port}")
    await process.start()
    try:
        async with aiohttp.ClientSession() as http:
            for name in ("sha512crypt@contoso.com", "sha256crypt@contoso.com"):
                for password, expected in ((PASSWORDS[name], "VERIFIED"), ("nope", "UNVERIFIED")):
                    body = okta_payload(name, password)
                    async with http.post(
                        process.url + HOOK_PATH, json=body, headers={"Authorization": HOOK_SECRET}
                    ) as response:
                        assert response.status == 200
                        assert credential(await response.json()) == expected, name
        loaded = [r for r in process.records() if r.get("msg") == "hash export loaded"]
        assert loaded and loaded[0]["processes"] is True
        process.send(signal.SIGTERM)
        assert await process.wait() == 0
    finally:
        await process.stop()
        secret_scan.add_output(process.output())


async def test_a_killed_hash_worker_costs_one_answer_then_new_workers_take_over(
    tmp_path: Path,
) -> None:
    import os
    import signal

    by_user = {row["username"]: row for row in ROWS}
    path = tmp_path / "sha.csv"
    name = "sha512crypt@contoso.com"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(ROWS[0]))
        writer.writeheader()
        writer.writerow(by_user[name])
    running = await started(source_config(path, workers=1))
    try:
        assert (await running.verify(name, PASSWORDS[name])).verified
        pool = running._processes
        assert pool is not None
        for pid in list(pool._processes):  # the out-of-memory killer, say
            os.kill(pid, signal.SIGKILL)
        answers = [await running.verify(name, PASSWORDS[name]) for _ in range(3)]
        # The pool notices the death on its own thread: at most the calls until then are lost,
        # each answered overloaded (unavailable, not counted against the user), never an error.
        lost = [a for a in answers if not a.verified]
        assert all((a.result, a.reason) == (Result.UNAVAILABLE, "overloaded") for a in lost)
        assert running._processes is not pool or not lost
        assert (await running.verify(name, PASSWORDS[name])).verified
        assert running._running == 0
    finally:
        await running.close()


async def test_a_flood_of_sha_crypt_checks_is_shed_not_queued_without_bound(
    tmp_path: Path,
) -> None:
    """The process pool sits behind the same slots as the threads: a burst is answered in time."""
    by_user = {row["username"]: row for row in ROWS}
    path = tmp_path / "sha.csv"
    name = "sha512crypt@contoso.com"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(ROWS[0]))
        writer.writeheader()
        writer.writerow(by_user[name])
    running = await started(source_config(path, workers=1, max_queue=2, max_wait_seconds=0.5))
    try:
        verdicts = await asyncio.gather(
            *(running.verify(name, PASSWORDS[name] + str(i % 2)) for i in range(60))
        )
        shed = [v for v in verdicts if v.reason == "overloaded"]
        checked = [v for v in verdicts if v.reason == "wrong_password"]
        assert shed and checked and len(shed) + len(checked) == 60
        assert all(v.result is Result.UNAVAILABLE and not v.sent for v in shed)
        assert running._running == 0 and running._queued == 0
        assert (await running.verify(name, PASSWORDS[name])).verified
    finally:
        await running.close()
