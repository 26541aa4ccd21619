"""A gateway configuration with every endpoint on: hook, event hook, ledger, admin listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import gateway_yaml

OPENAPI_PATH = Path(__file__).parent.parent.parent / "openapi.yaml"
EVENT_SECRET = "Basic ZXZlbnRzOmNvbnRyYWN0LWV2ZW50LXNlY3JldA=="
ADMIN_SECRET = "Bearer contract-admin-secret-5521"


def full_config(
    authority: str, ledger_path: Path, *, port: int = 8080, admin_port: int = 9090
) -> dict[str, Any]:
    """The test source config plus the migration ledger, the event hook and the admin listener."""
    data: dict[str, Any] = yaml.safe_load(gateway_yaml(authority))
    data["server"]["port"] = port
    data["migration"] = {
        "ledger": f"sqlite:///{ledger_path}",
        "event_hook": {"auth": {"secrets": [EVENT_SECRET]}},
    }
    data["admin"] = {"host": "127.0.0.1", "port": admin_port, "auth": {"secrets": [ADMIN_SECRET]}}
    return data


def load_openapi() -> dict[str, Any]:
    """The repository's OpenAPI document."""
    document: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return document
