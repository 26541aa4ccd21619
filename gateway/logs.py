"""Logging set-up: JSON lines, usernames hashed or masked, third-party loggers kept quiet and mute.

Third-party records (the loggers in `LIBRARY_LOGGERS` and their children) never carry values:
`LibraryLogFilter` keeps only their message template, drops their exception messages, and drops
whole records whose template is known to print an HTTP body, a token or user input. msal logs a
non-JSON token response verbatim at ERROR, and an upstream or proxy page that reflects the request
would put the password and the client secret into the log; log levels cannot stop that.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from plugins.base import derive_key

# urllib3 logs URLs (the user-realm URL contains the username); msal logs request details and
# response bodies; aiohttp's client and server log URLs and parser errors quoting the request.
# Each name covers its child loggers: levels by inheritance, `LibraryLogFilter` by installation.
LIBRARY_LOGGERS = (
    "urllib3", "msal", "requests", "aiohttp", "asyncio",
    # The ledger's stack logs statements (and at DEBUG, rows): logins in clear.
    "sqlalchemy", "aiosqlite", "asyncpg", "alembic",
)  # fmt: skip
# Templates that print a body, a token or user input (msal 1.x; found by reading its logger
# calls). Arguments are dropped anyway; these go whole because the text around them is the leak
# or because the values are already formatted into the template.
BODY_TEMPLATES = (
    "Token response is not in json format",  # msal.oauth2cli.oauth2, ERROR: the token response
    "Malformed MEX document",  # msal.mex, ERROR: the MEX response
    "Unsuccessful WsTrust request receives",  # msal.wstrust_request: the AD FS response
    "event=%s",  # msal.token_cache: the token request and response, partly masked
    "The id_token was approximately",  # msal.oauth2cli.oidc, WARNING: the user's id_token claims
    "get_accounts(username=",  # msal.application: the username, formatted in
    "Refresh failed.",  # msal.application: the server's error_description, formatted in
    "IMDS emits unexpected payload",  # msal.managed_identity: the response body
    "Cloud Shell IMDS error",  # msal.cloudshell: the response body
    "Unable to decode jwt payload",  # msal.cloudshell: a token
    "Got auth response",  # msal.oauth2cli.authcode: the authorization code
    "Open a browser on this device to visit",  # msal.oauth2cli.authcode: login_hint, formatted in
)
# Loggers whose every message is someone else's text: pymsalruntime's log lines, passed as is.
DROPPED_LOGGERS = ("msal.broker",)
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON."""
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages from libraries can carry URLs with usernames.
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the same `extra=` fields appended."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as `time level logger: msg key=value ...`."""
        fields = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")
        )
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        exc = (
            f" exc_type={record.exc_info[0].__name__}"
            if record.exc_info and record.exc_info[0]
            else ""
        )
        return f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()} {fields}{exc}".rstrip()


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_library_logger(name: str) -> bool:
    """True for the loggers in `LIBRARY_LOGGERS` and their children."""
    return _under(name, LIBRARY_LOGGERS)


class LibraryLogFilter(logging.Filter):
    """Third-party records keep their template only; those known to print a body are dropped.

    Records of other loggers pass untouched, so the filter may sit on a handler as well.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop or strip a third-party record (idempotent: it may pass a logger and a handler)."""
        if not is_library_logger(record.name):
            return True
        if not isinstance(record.msg, str):  # an object's str() is its values
            record.msg = f"<{type(record.msg).__name__}>"
        if _under(record.name, DROPPED_LOGGERS) or any(t in record.msg for t in BODY_TEMPLATES):
            return False
        if record.args:
            record.args = ()
            record.args_dropped = True
        if record.exc_info or record.exc_text:
            # The type only (as JsonFormatter shows it): messages quote URLs, bodies, headers.
            exc_type = record.exc_info[0] if record.exc_info else None
            if exc_type is not None:
                record.exc_type = exc_type.__name__
            record.exc_info = None
            record.exc_text = None
        return True


LIBRARY_FILTER = LibraryLogFilter()


class _AttachingRecordFactory:
    """Puts `LIBRARY_FILTER` on a library logger created after `install_library_filters` ran.

    Logger filters see only records made at that very logger, not its children's, and libraries
    create loggers when their modules are imported (msal's on first use of a source). The record
    factory runs before the logger's filters, so the filter is in place for the first record.
    """

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner
        self._seen: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        name = record.name
        if isinstance(name, str) and name not in self._seen:  # makeLogRecord passes None
            self._seen.add(name)
            if is_library_logger(name):
                _attach(logging.getLogger(name))
        return record


def _attach(logger: logging.Logger) -> None:
    if LIBRARY_FILTER not in logger.filters:
        logger.addFilter(LIBRARY_FILTER)


def install_library_filters() -> None:
    """Filter every third-party logger, existing or future (idempotent; cheap to repeat)."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and is_library_logger(name):
            _attach(logger)
    for name in LIBRARY_LOGGERS:
        _attach(logging.getLogger(name))
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _AttachingRecordFactory):
        logging.setLogRecordFactory(_AttachingRecordFactory(factory))


def configure_logging(
    level: str = "info", fmt: Literal["json", "text"] = "json", library_debug: bool = False
) -> None:
    """Install one stderr handler on the root logger; third-party records filtered always.

    `library_debug` only lowers the third-party levels: their records stay template-only.
    """
    install_library_filters()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(LIBRARY_FILTER)
    logging.getLogger().handlers[:] = [handler]
    apply_log_levels(level, library_debug)


def apply_log_levels(level: str, library_debug: bool) -> None:
    """Set the gateway's and the libraries' levels (at start-up and on a reload)."""
    logging.getLogger().setLevel(level.upper())
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if library_debug else logging.WARNING)


class UsernameRedactor:
    """Turns a username into what logs may show: an HMAC, a mask, or (if configured) itself."""

    def __init__(self, mode: Literal["hash", "mask", "clear"], key: bytes | None = None) -> None:
        self.mode = mode
        # A per-process key unless one is shared (cache.hmac_secret), so hashes cannot be
        # reversed by hashing a list of known usernames.
        self._key = key or secrets.token_bytes(32)

    def __call__(self, username: str) -> str:
        """Redact one username."""
        if self.mode == "clear":
            return username
        if self.mode == "mask":
            local, at, domain = username.partition("@")
            return f"{local[:1]}***{at}{domain}"
        return "h:" + derive_key(self._key, "log-user", username.strip().casefold())[:8].hex()
