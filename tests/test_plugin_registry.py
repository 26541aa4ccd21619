"""Source types: the built-in table and third-party types from the `gateway.plugins` entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import create_app
from gateway.config import ConfigError, parse_config
from plugins.azure_ad import AzureAdSource
from plugins.registry import BUILTIN_TYPES, UnknownSourceType, available_types, source_class
from tests.conftest import SCAN, credential, gateway_yaml, post_hook
from tests.static_source import StaticSource

STATIC_PASSWORD = "Static#Pass-7319"


@pytest.fixture
def installed_static_plugin(tmp_path: Path) -> Iterator[None]:
    """A distribution on sys.path whose entry point registers `static` (as pip would install it)."""
    SCAN.secrets.add(STATIC_PASSWORD)
    dist = tmp_path / "gateway_static_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: gateway-static-plugin\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[gateway.plugins]\nstatic = tests.static_source:StaticSource\n", encoding="utf-8"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))


def test_builtin_type_resolves_from_the_table() -> None:
    assert BUILTIN_TYPES["azure_ad"] == "plugins.azure_ad:AzureAdSource"
    assert source_class("azure_ad") is AzureAdSource


def test_unknown_type_is_refused() -> None:
    with pytest.raises(UnknownSourceType):
        source_class("carrier_pigeon")


def test_entry_point_type_resolves(installed_static_plugin: None) -> None:
    assert "static" in available_types()
    assert source_class("static") is StaticSource


def _static_config(**extra: Any) -> str:
    config = yaml.safe_load(gateway_yaml("http://127.0.0.1:9"))
    config["sources"] = [
        {"name": "legacy", "type": "static", "username": "old@legacy.example",
         "password": STATIC_PASSWORD, **extra}
    ]  # fmt: skip
    config["routes"] = [{"match": {"domains": ["legacy.example"]}, "sources": ["legacy"]}]
    return yaml.safe_dump(config)


def test_entry_point_type_config_rejects_unknown_keys(installed_static_plugin: None) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_static_config(colour="blue"), env={})
    assert dict(caught.value.problems)["sources[0].colour"] == "unknown key"


async def test_entry_point_type_serves_hook_calls(
    installed_static_plugin: None, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(parse_config(_static_config(), env={})))
    _, body = await post_hook(client, "old@legacy.example", STATIC_PASSWORD)
    assert credential(body) == "VERIFIED"
    _, body = await post_hook(client, "old@legacy.example", "Static#Pass-0000")
    assert credential(body) == "UNVERIFIED"
