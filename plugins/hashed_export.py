"""`type: hashed_export`: users and password hashes from a file (CSV or JSON lines).

The file is read and every row checked when the configuration is validated, so a bad row is a
config error naming its line (`sources[1].file: line 7: salt: not base64`), at start-up and on a
reload alike; a reload whose file changed builds a new source (the file's digest is part of the
settings). Hashes stay in memory only; no hash, salt or password is ever logged or put in a
message.

Each row's cost parameters are bounded when it is read: by `max_cost` (`password_hashes.
CostLimits`) for a source some route sends sign-ins to, and by what Okta imports for a source no
route names (an import-only source: Okta, not the gateway, will check those hashes).

Verification is CPU work (bcrypt, argon2, scrypt, many PBKDF2 rounds): it runs in a small thread
pool of this source (those libraries release the GIL), and the SHA-crypt schemes, which hold the
GIL throughout (`password_hashes.GIL_BOUND_SCHEMES`), in a pool of as many worker processes, so
they never stall the event loop. `workers` bounds the checks running at once either way. A call
that could not start within `max_wait_seconds` (or would wait behind more than `max_queue`
others) is answered at once as `unavailable` / `overloaded` instead of late. An unknown user
costs what a known user of the file's most common format costs: the password is checked against
a dummy hash of that format and parameters, built at start.

A check may not hold its worker past `max_check_seconds`: a thread cannot be stopped, so a check
for a thread is estimated from its parameters first (seconds per unit of work, learnt from this
source's own checks) and not started when it would overrun (`unavailable` / `too_costly`); a
check in a worker process that overruns has its processes killed and replaced.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from plugins.base import Result, Source, SourceConfig, SourceUse, Verdict
from plugins.password_hashes import (
    DEFAULT_LIMITS,
    GIL_BOUND_SCHEMES,
    REFERENCE_SECONDS_PER_UNIT,
    CostLimits,
    FirebaseScryptParams,
    HashFormatError,
    StoredHash,
    cost_problems,
    okta_import_problem,
    parse_hash,
)

logger = logging.getLogger(__name__)

# Columns that describe the hash; every other column is a profile attribute for an import.
HASH_COLUMNS = frozenset(
    {"hash", "algorithm", "salt", "salt_order", "iterations", "key_size", "digest"}
)
LEARN_FROM_SECONDS = 0.02  # checks shorter than this do not refine the cost estimate
MAX_REPORTED_ROWS = 20  # a file with thousands of bad rows names the first ones, then a count
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def match_key(username: str, usernames: Literal["exact", "ascii_case_insensitive"]) -> str:
    """The key a username is looked up by.

    Never Unicode-normalised or case-folded (DESIGN "Keys": `straße`/`strasse`, the Kelvin sign
    and `K` are different users); `ascii_case_insensitive` lowers A-Z only, which merges no two
    strings that differ in anything but ASCII case, as Okta and Entra logins are compared.
    """
    return username.translate(_ASCII_LOWER) if usernames == "ascii_case_insensitive" else username


class FirebaseScryptConfig(BaseModel):
    """A Firebase project's password hash parameters, as the Console shows them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signer_key: SecretStr  # base64_signer_key
    salt_separator: str  # base64_salt_separator
    rounds: StrictInt = Field(ge=1, le=16)
    mem_cost: StrictInt = Field(ge=1, le=16)

    @field_validator("signer_key")
    @classmethod
    def _signer_key_base64(cls, value: SecretStr) -> SecretStr:
        _b64(value.get_secret_value(), "must be base64")
        return value

    @field_validator("salt_separator")
    @classmethod
    def _separator_base64(cls, value: str) -> str:
        _b64(value, "must be base64")
        return value

    def params(self) -> FirebaseScryptParams:
        """The decoded parameters."""
        return FirebaseScryptParams(
            _b64(self.signer_key.get_secret_value(), ""),
            _b64(self.salt_separator, ""),
            self.rounds,
            self.mem_cost,
        )


def _b64(text: str, message: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(message) from None


@dataclass(eq=False, slots=True)
class ExportUser:
    """One row: the username as written, its line, its hash and its other columns."""

    username: str
    line: int
    stored: StoredHash = field(repr=False)
    attributes: dict[str, Any] = field(repr=False)


class HashExport:
    """A loaded file: users by match key, in file order, and the file's digest."""

    def __init__(
        self,
        path: str,
        digest: str,
        users: list[ExportUser],
        columns: tuple[str, ...],
        usernames: Literal["exact", "ascii_case_insensitive"],
    ) -> None:
        self.path = path
        self.digest = digest
        self.users = users
        self.columns = columns
        self.usernames = usernames
        self._by_key = {match_key(u.username, usernames): u for u in users}

    def __eq__(self, other: object) -> bool:
        """Two loads are the same when the bytes and the matching rule are."""
        if not isinstance(other, HashExport):
            return NotImplemented
        return (self.digest, self.usernames) == (other.digest, other.usernames)

    def __hash__(self) -> int:
        return hash((self.digest, self.usernames))

    def __repr__(self) -> str:
        return f"HashExport({self.path!r}, users={len(self.users)})"

    def find(self, username: str) -> ExportUser | None:
        """The row for a typed username (see `match_key`), or None."""
        return self._by_key.get(match_key(username, self.usernames))

    def template(self) -> StoredHash:
        """A hash of the most common scheme and parameters (the first row of that kind)."""
        counts = Counter(u.stored.signature() for u in self.users)
        common = counts.most_common(1)[0][0]
        return next(u.stored for u in self.users if u.stored.signature() == common)

    def formats(self) -> Counter[str]:
        """Rows per scheme."""
        return Counter(u.stored.kind for u in self.users)


class ExportFileError(Exception):
    """The file cannot be used; `problems` are sentences naming lines, never values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_export(
    path: str,
    *,
    file_format: Literal["auto", "csv", "jsonl"] = "auto",
    firebase: FirebaseScryptParams | None = None,
    usernames: Literal["exact", "ascii_case_insensitive"] = "ascii_case_insensitive",
    limits: CostLimits | None = DEFAULT_LIMITS,
) -> HashExport:
    """Read and check every row; raise `ExportFileError` naming each bad line.

    `limits` bounds what the gateway will check; None means the gateway checks none of these
    hashes (an import-only source), so each row must be one Okta can import as it is.
    """
    kind = file_format
    if kind == "auto":
        suffix = Path(path).suffix.lower()
        if suffix not in (".csv", ".jsonl"):
            raise ExportFileError(["name it .csv or .jsonl, or set `format: csv|jsonl`"])
        kind = "csv" if suffix == ".csv" else "jsonl"
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ExportFileError([f"cannot read {path}: {err.strerror or 'error'}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ExportFileError([f"line {line}: not UTF-8 text"]) from None
    rows, columns = _csv_rows(text) if kind == "csv" else _jsonl_rows(text)
    problems: list[str] = []
    users: list[ExportUser] = []
    first_line: dict[str, int] = {}
    bad = 0
    for line, row in rows:
        try:
            user = _user(line, row, firebase)
            _judge(user.stored, limits)
            key = match_key(user.username, usernames)
            if key in first_line:
                raise HashFormatError(f"username: duplicate of line {first_line[key]}")
            first_line[key] = line
            users.append(user)
        except HashFormatError as err:
            bad += 1
            if bad <= MAX_REPORTED_ROWS:
                problems.append(f"line {line}: {err}")
    if bad > MAX_REPORTED_ROWS:
        problems.append(f"... and {bad - MAX_REPORTED_ROWS} more bad rows")
    if not problems and not users:
        problems.append("has no users")
    if problems:
        raise ExportFileError(problems)
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return HashExport(path, digest, users, columns, usernames)


def _csv_rows(text: str) -> tuple[Iterator[tuple[int, dict[str, Any]]], tuple[str, ...]]:
    """Rows of a CSV file with a header row, with the line each row ends on."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = tuple(reader.fieldnames or ())
    except csv.Error:
        raise ExportFileError(["line 1: not a CSV header"]) from None
    missing = [c for c in ("username", "hash") if c not in header]
    if missing:
        raise ExportFileError([f"line 1: the header has no {' or '.join(missing)} column"])
    if len(set(header)) != len(header):
        raise ExportFileError(["line 1: a column name appears twice"])

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                raise ExportFileError([f"line {reader.line_num}: not valid CSV"]) from None
            if None in row:  # more fields than the header has
                raise ExportFileError([f"line {reader.line_num}: more fields than columns"])
            if not any(row.values()):
                continue
            yield reader.line_num, row

    return rows(), header


def _jsonl_rows(text: str) -> tuple[Iterator[tuple[int, dict[str, Any]]], tuple[str, ...]]:
    """One JSON object per line; blank lines are skipped."""
    rows: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    # Only \n ends a line: U+2028 and friends may stand inside a JSON string.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ExportFileError([f"line {number}: not JSON"]) from None
        if not isinstance(row, dict):
            raise ExportFileError([f"line {number}: not a JSON object"])
        columns.update(dict.fromkeys(row))
        rows.append((number, row))
    return iter(rows), tuple(columns)


def _judge(stored: StoredHash, limits: CostLimits | None) -> None:
    """Refuse a hash above the gateway's `limits`, or, with None, one Okta cannot import."""
    if limits is not None:
        problems = cost_problems(stored, limits)
        if problems:
            raise HashFormatError("; ".join(problems))
        return
    refusal = okta_import_problem(stored)
    if refusal is not None:
        raise HashFormatError(
            f"{refusal}, and no route sends sign-ins to this source for the gateway to check "
            "it (import-only): add the source to a route or remove the row"
        )


def _user(line: int, row: Mapping[str, Any], firebase: FirebaseScryptParams | None) -> ExportUser:
    username = row.get("username")
    if not isinstance(username, str) or not username:
        raise HashFormatError("username: missing" if not username else "username: must be text")
    if username != username.strip():
        raise HashFormatError("username: has spaces before or after it")
    if not username.isprintable():
        raise HashFormatError("username: has control or unprintable characters")
    stored = parse_hash(row, firebase)
    attributes = {
        k: v for k, v in row.items() if k not in HASH_COLUMNS and v is not None and v != ""
    }
    return ExportUser(username, line, stored, attributes)


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 2))


class MaxCostConfig(BaseModel):
    """`max_cost`: the most one row may cost the gateway to check (`password_hashes.CostLimits`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bcrypt_rounds: StrictInt = Field(DEFAULT_LIMITS.bcrypt_rounds, ge=4, le=31)
    argon2_memory_kib: StrictInt = Field(DEFAULT_LIMITS.argon2_memory_kib, ge=8, le=2**32 - 1)
    argon2_time_cost: StrictInt = Field(DEFAULT_LIMITS.argon2_time_cost, ge=1, le=2**32 - 1)
    argon2_memory_time_kib: StrictInt = Field(DEFAULT_LIMITS.argon2_memory_time_kib, ge=8, le=2**64)
    argon2_parallelism: StrictInt = Field(DEFAULT_LIMITS.argon2_parallelism, ge=1, le=2**24 - 1)
    scrypt_memory_bytes: StrictInt = Field(DEFAULT_LIMITS.scrypt_memory_bytes, ge=1024, le=2**64)
    pbkdf2_iterations: StrictInt = Field(DEFAULT_LIMITS.pbkdf2_iterations, ge=1, le=2**64)
    sha_crypt_rounds: StrictInt = Field(DEFAULT_LIMITS.sha_crypt_rounds, ge=1000, le=999_999_999)

    def limits(self) -> CostLimits:
        """The same bounds for the hash module."""
        return CostLimits(**self.model_dump())


class HashedExportConfig(SourceConfig):
    """`type: hashed_export`."""

    type: Literal["hashed_export"]
    # Validated before `file`, which needs them.
    format: Literal["auto", "csv", "jsonl"] = "auto"
    firebase_scrypt: FirebaseScryptConfig | None = None
    usernames: Literal["exact", "ascii_case_insensitive"] = "ascii_case_insensitive"
    file: str
    # Threads that verify at once: CPU-bound work gains nothing past the core count.
    workers: StrictInt = Field(default_factory=_default_workers, ge=1, le=64)
    max_queue: StrictInt = Field(32, ge=0, le=10_000)
    max_wait_seconds: StrictFloat = Field(1.0, gt=0, le=30)
    max_cost: MaxCostConfig = Field(default_factory=MaxCostConfig)
    # The longest one check may hold a worker (the hook's default budget).
    max_check_seconds: StrictFloat = Field(2.5, gt=0, le=60)

    _export: HashExport | None = PrivateAttr(None)
    # Part of equality: a reload that routes an import-only source builds it anew.
    _verifies: bool = PrivateAttr(True)

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> HashedExportConfig:
        firebase = self.firebase_scrypt.params() if self.firebase_scrypt else None
        verifies = self._verifies = SourceUse.of(info.context).verifies
        try:
            self._export = load_export(
                self.file,
                file_format=self.format,
                firebase=firebase,
                usernames=self.usernames,
                limits=self.max_cost.limits() if verifies else None,
            )
        except ExportFileError as err:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("export_file", problem),
                        loc=("file",),
                        input=self.file,
                    )
                    for problem in err.problems
                ],
            ) from None
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def file_sha256(self) -> str:
        """The file's digest: part of the source's settings, so a changed file is a new source."""
        return self.export.digest

    @property
    def export(self) -> HashExport:
        """The users read from `file`."""
        assert self._export is not None
        return self._export

    @property
    def verifies(self) -> bool:
        """False for an import-only source: no route sends it sign-ins, Okta checks its hashes."""
        return self._verifies


class HashedExportSource(Source):
    """Checks passwords against the hashes of an exported directory."""

    config_class: ClassVar[type[SourceConfig]] = HashedExportConfig
    known_reasons: ClassVar[frozenset[str]] = frozenset(
        {
            "wrong_password",
            "unknown_user",
            "unsupported_characters",
            "overloaded",
            "too_costly",
            "import_only",
        }
    )
    # A file has no outage: `overloaded` is load this source sheds itself, and must not open
    # the breaker for every user (anyone can send many sign-ins at once).
    outage_reasons: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, HashedExportConfig):
            raise TypeError("HashedExportSource needs a HashedExportConfig")
        super().__init__(config)
        self.settings = config
        self.export = config.export
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None
        self._worker_pids: dict[concurrent.futures.Executor, Any] = {}  # pool -> pid queue
        self._slots = asyncio.Semaphore(config.workers)
        self._running = 0
        self._queued = 0
        self._dummy: StoredHash | None = None
        self._mean_seconds = 0.0  # recent verification time, for the expected wait
        # Seconds per unit of work by family, refined by every check this source makes.
        self._rates = dict(REFERENCE_SECONDS_PER_UNIT)
        self._too_costly_lines: set[int] = set()  # each such row is logged once
        # Checks killed past their time (weak: a caller that gave up never collects its own).
        self._overran: weakref.WeakSet[concurrent.futures.Future[Any]] = weakref.WeakSet()

    @property
    def ready(self) -> bool:
        """True once the dummy hash for unknown users exists (at once for an import-only file)."""
        return self._dummy is not None or not self.settings.verifies

    @property
    def last_error(self) -> str | None:
        """`not_started` until `start` has run."""
        return None if self.ready else "not_started"

    async def start(self) -> None:
        """Start the pools and build the dummy hash (a costly hash takes a moment)."""
        formats = self.export.formats()
        if not self.settings.verifies:
            # Okta checks these hashes; they may cost more than the gateway would ever run.
            logger.info(
                "hash export loaded for import only",
                extra={"source": self.name, "users": len(self.export.users)},
            )
            return
        self._threads = concurrent.futures.ThreadPoolExecutor(
            self.settings.workers, thread_name_prefix=f"hashed-export-{self.name}"
        )
        if any(kind in GIL_BOUND_SCHEMES for kind in formats):
            self._processes = self._new_processes()
        loop = asyncio.get_running_loop()
        dummy = await loop.run_in_executor(self._threads, self.export.template().dummy)
        # Also starts the first worker process, when the dummy's scheme needs one.
        _, self._mean_seconds = await loop.run_in_executor(self._pool_for(dummy), _check, dummy, "")
        self._learn(dummy, self._mean_seconds)
        self._dummy = dummy
        logger.info(
            "hash export loaded",
            extra={
                "source": self.name,
                "users": len(self.export.users),
                "formats": dict(formats),
                "processes": self._processes is not None,
            },
        )

    def _new_processes(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn, not fork: the gateway's threads (pools, Redis, aiohttp) must not be forked.
        context = multiprocessing.get_context("spawn")
        # Each worker says its pid when it starts, so an overrunning check can be killed.
        pids = context.SimpleQueue()
        pool = concurrent.futures.ProcessPoolExecutor(
            self.settings.workers, mp_context=context, initializer=_say_pid, initargs=(pids,)
        )
        self._worker_pids[pool] = pids
        return pool

    def _pool_for(self, stored: StoredHash) -> concurrent.futures.Executor:
        processes = self._processes
        if stored.holds_gil and processes is not None:
            return processes
        assert self._threads is not None
        return self._threads

    async def close(self) -> None:
        """Stop the pools; verifications still queued are dropped."""
        for pool in (self._threads, self._processes):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        for pids in self._worker_pids.values():
            pids.close()
        self._worker_pids.clear()

    def unsupported_input(self, username: str, password: str) -> str | None:
        """Lone surrogates cannot be UTF-8, so no stored hash can be of such a password."""
        try:
            password.encode("utf-8")
        except UnicodeEncodeError:
            return "unsupported_characters"
        return None

    async def verify(self, username: str, password: str) -> Verdict:
        """Look the user up, then check the password (or a dummy, for an unknown user) in the pool."""
        if not self.settings.verifies:
            return self.verdict(Result.UNAVAILABLE, "import_only", sent=False)
        if self._dummy is None:
            return self.verdict(Result.UNAVAILABLE, "not_ready")
        user = self.export.find(username)
        stored = user.stored if user is not None else self._dummy
        matched = await self._run(stored, password, user.line if user is not None else 0)
        if isinstance(matched, str):
            # Nothing was checked: the attempt goes back to the user's budget.
            return self.verdict(Result.UNAVAILABLE, matched, sent=False)
        if user is None:
            return self.verdict(Result.DENIED, "unknown_user", unknown_user=True)
        if matched:
            return self.verdict(Result.VERIFIED, "ok")
        return self.verdict(Result.DENIED, "wrong_password")

    def expected_wait(self) -> float:
        """Seconds a verification asked now would wait for a thread (from recent durations)."""
        workers = self.settings.workers
        ahead = self._running + self._queued + 1 - workers
        return 0.0 if ahead <= 0 else math.ceil(ahead / workers) * self._mean_seconds

    def estimate(self, stored: StoredHash) -> float:
        """Seconds one check of `stored` should take here, from its parameters."""
        family, units = stored.work()
        return units * self._rates[family]

    def _learn(self, stored: StoredHash, seconds: float) -> None:
        if seconds < LEARN_FROM_SECONDS:
            return  # call overhead, not work: a 1-iteration PBKDF2 says nothing of 2 million
        family, units = stored.work()
        self._rates[family] = 0.7 * self._rates[family] + 0.3 * seconds / units

    async def _run(self, stored: StoredHash, password: str, line: int) -> bool | str:
        """Check `password` in a pool, or say why not (`overloaded`, `too_costly`): never late."""
        settings = self.settings
        if self._running >= settings.workers and self._queued >= settings.max_queue:
            return "overloaded"
        if self.expected_wait() > settings.max_wait_seconds:
            return "overloaded"
        in_thread = not stored.holds_gil or self._processes is None
        if in_thread and self.estimate(stored) > settings.max_check_seconds:
            # A thread cannot be stopped once it runs: a check that would overrun never starts.
            self._log_too_costly(stored, line)
            return "too_costly"
        self._queued += 1
        try:
            async with asyncio.timeout(settings.max_wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            return "overloaded"
        finally:
            self._queued -= 1
        loop = asyncio.get_running_loop()
        self._running += 1
        pool = self._pool_for(stored)  # after the wait: the processes may have been replaced
        try:
            job = pool.submit(_check, stored, password)
        except concurrent.futures.BrokenExecutor:
            self._done(stored, None)
            self._retire(pool)
            return "overloaded"
        except RuntimeError:  # the pool is shut down (the source is closing)
            self._done(stored, None)
            return "overloaded"
        # The worker is released when the work ends, not when a caller stops waiting for it:
        # a timed-out call still holds its worker, so the count of busy workers stays true.
        job.add_done_callback(lambda done: _call_soon(loop, lambda _: self._done(stored, done), 0))
        if pool is self._processes:
            # A process can be stopped: past its time the check's processes are replaced.
            timer = loop.call_later(settings.max_check_seconds, self._overrun, pool, job)
            job.add_done_callback(lambda _: _call_soon(loop, lambda _: timer.cancel(), 0))
        try:
            matched, _ = await asyncio.wrap_future(job, loop=loop)
        except concurrent.futures.BrokenExecutor:
            self._retire(pool)
            if job in self._overran:
                self._overran.discard(job)
                return "too_costly"
            return "overloaded"
        return bool(matched)

    def _log_too_costly(self, stored: StoredHash, line: int) -> None:
        if line in self._too_costly_lines:
            return
        self._too_costly_lines.add(line)
        logger.warning(
            "a hash check would overrun max_check_seconds; not started",
            extra={
                "source": self.name,
                "line": line or None,  # 0: the dummy of unknown users
                "estimated_seconds": round(self.estimate(stored), 3),
            },
        )

    def _overrun(
        self, pool: concurrent.futures.Executor, job: concurrent.futures.Future[Any]
    ) -> None:
        """A check held its process past `max_check_seconds`: kill that pool, start a new one."""
        if job.done() or pool is not self._processes:
            return
        logger.error(
            "a hash check overran max_check_seconds; replacing its worker processes",
            extra={"source": self.name, "max_check_seconds": self.settings.max_check_seconds},
        )
        self._overran.add(job)
        started: set[int] = set()
        pids = self._worker_pids.get(pool)
        while pids is not None and not pids.empty():
            started.add(pids.get())
        self._retire(pool)
        # Only live children of this process: a pid the system reused is someone else's.
        for child in multiprocessing.active_children():
            if child.pid in started:
                child.kill()

    def _retire(self, pool: concurrent.futures.Executor) -> None:
        """New worker processes for the next calls (a worker died, or a check overran)."""
        if pool is not self._processes:
            return  # another call replaced it already
        logger.error("hash-checking processes replaced", extra={"source": self.name})
        self._processes = self._new_processes()
        pool.shutdown(wait=False, cancel_futures=True)
        pids = self._worker_pids.pop(pool, None)
        if pids is not None:
            pids.close()

    def _done(self, stored: StoredHash, job: object) -> None:
        self._running -= 1
        self._slots.release()
        if not isinstance(job, concurrent.futures.Future) or job.cancelled():
            return
        if job.exception() is None:
            _, seconds = job.result()
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds
            self._learn(stored, seconds)

    def iter_users(self) -> Iterator[dict[str, Any]]:
        """Each row's attributes (its non-hash columns), in file order, for an import."""
        return export_rows(self.export)


def _say_pid(pids: Any) -> None:
    """A worker process's initializer: tell the source which process it is."""
    pids.put(os.getpid())


def _check(stored: StoredHash, password: str) -> tuple[bool, float]:
    """Check `password` against `stored` in a pool thread or process: (matched, seconds taken)."""
    started = time.perf_counter()
    try:
        matched = stored.verify(password)
    except (ValueError, TypeError):  # content a library refuses: no such password is stored
        matched = False
    return matched, time.perf_counter() - started


def export_rows(export: HashExport) -> Iterator[dict[str, Any]]:
    """Each row's attributes (its non-hash columns, `username` included), in file order."""
    for user in export.users:
        yield dict(user.attributes)


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[[object], None], arg: object
) -> None:
    """Schedule `callback` on `loop` from a pool thread; nothing to do once the loop has closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, arg)


def okta_password_hash(export: HashExport) -> Callable[[Mapping[str, Any]], dict[str, Any] | None]:
    """For an import: the Okta `credentials.password.hash` of a listed user, if Okta can run it."""

    def lookup(user: Mapping[str, Any]) -> dict[str, Any] | None:
        username = user.get("username")
        found = export.find(username) if isinstance(username, str) else None
        return found.stored.okta_hash() if found is not None else None

    return lookup
