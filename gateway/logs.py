"""Logging set-up: JSON lines, usernames hashed or masked, third-party loggers kept quiet."""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from typing import Any, Literal

from plugins.base import derive_key

# urllib3 logs URLs (the user-realm URL contains the username); msal logs request details.
LIBRARY_LOGGERS = ("urllib3", "msal", "requests", "aiohttp.access", "asyncio")
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


def configure_logging(
    level: str = "info", fmt: Literal["json", "text"] = "json", library_debug: bool = False
) -> None:
    """Install one stderr handler on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
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
