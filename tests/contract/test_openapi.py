"""openapi.yaml against the app: every route documented, every path served, valid 3.1, examples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp import web
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.admin import create_admin_app
from gateway.app import create_app
from gateway.config import parse_config
from gateway.runtime import RUNTIME
from tests.contract.gateway_config import full_config, load_openapi

DOCUMENT_URI = "urn:gateway:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path) of every route; HEAD routes aiohttp adds beside each GET are left out."""
    found = set()
    for resource in app.router.resources():
        for route in resource:
            found.add((route.method.upper(), resource.canonical))
    gets = {path for method, path in found if method == "GET"}
    return {(m, p) for m, p in found if not (m == "HEAD" and p in gets)}


def served_routes(tmp_path: Path) -> dict[str, set[tuple[str, str]]]:
    """The routes of the main app and the admin app, built from a config with everything on."""
    data = full_config("http://127.0.0.1:9", tmp_path / "ledger.db")
    config = parse_config(yaml.safe_dump(data), env={})
    app = create_app(config)
    admin = create_admin_app(app[RUNTIME])
    return {"main": _routes(app), "admin": _routes(admin)}


def documented_routes(document: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """(METHOD, path) per listener: tag `admin` is the admin listener, the rest the hook port."""
    found: dict[str, set[tuple[str, str]]] = {"main": set(), "admin": set()}
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                listener = "admin" if "admin" in item[method].get("tags", []) else "main"
                found[listener].add((method.upper(), path))
    return found


def test_every_served_route_is_documented(tmp_path: Path) -> None:
    served, documented = served_routes(tmp_path), documented_routes(load_openapi())
    for listener in ("main", "admin"):
        missing = served[listener] - documented[listener]
        assert not missing, f"{listener} listener routes missing from openapi.yaml: {missing}"


def test_every_documented_route_is_served(tmp_path: Path) -> None:
    served, documented = served_routes(tmp_path), documented_routes(load_openapi())
    for listener in ("main", "admin"):
        extra = documented[listener] - served[listener]
        assert not extra, f"openapi.yaml documents routes the {listener} listener lacks: {extra}"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = load_openapi()
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises OpenAPIValidationError with the path of the problem


def test_every_operation_names_its_responses_and_security() -> None:
    document = load_openapi()
    schemes = set(document["components"]["securitySchemes"])
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = item[method]
            assert operation.get("responses"), f"{method} {path}: no responses"
            assert "security" in operation, f"{method} {path}: say its security ([] for none)"
            for requirement in operation["security"]:
                assert set(requirement) <= schemes, f"{method} {path}: unknown scheme"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _media_examples(document: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(label, JSON pointer of the schema, example) for every example of a request or response."""

    def of_content(content: dict[str, Any], where: tuple[str, ...]) -> Iterator[Any]:
        for media_type, media in content.items():
            if "schema" not in media:
                continue
            pointer = _pointer(*where, "content", media_type, "schema")
            label = "/".join((*where, media_type))
            if "example" in media:
                yield label, pointer, media["example"]
            for name, example in media.get("examples", {}).items():
                yield f"{label} ({name})", pointer, example["value"]

    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = item[method]
            body = operation.get("requestBody", {})
            yield from of_content(body.get("content", {}), ("paths", path, method, "requestBody"))
            for status, response in operation["responses"].items():
                if "$ref" not in response:
                    where = ("paths", path, method, "responses", status)
                    yield from of_content(response.get("content", {}), where)
    for name, response in document["components"]["responses"].items():
        yield from of_content(response.get("content", {}), ("components", "responses", name))


def _validator(document: dict[str, Any], pointer: str) -> jsonschema.protocols.Validator:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    schema = {"$ref": f"{DOCUMENT_URI}#/{pointer}"}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return validator


def test_there_are_request_examples_for_both_hooks() -> None:
    labels = [label for label, _, _ in _media_examples(load_openapi())]
    assert any(label.startswith("paths//okta/password-import/post/requestBody") for label in labels)
    assert any(label.startswith("paths//okta/events/post/requestBody") for label in labels)


@pytest.mark.parametrize(
    ("label", "pointer", "example"),
    list(_media_examples(load_openapi())),
    ids=lambda value: value if isinstance(value, str) and value.startswith("paths") else "",
)
def test_every_example_matches_its_schema(label: str, pointer: str, example: Any) -> None:
    errors = sorted(
        _validator(load_openapi(), pointer).iter_errors(example), key=lambda e: list(e.path)
    )
    assert not errors, f"{label}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
    )


def test_the_request_examples_are_answered_by_the_parser() -> None:
    """The documented hook examples are requests the gateway accepts, not only schema-valid."""
    import json

    from gateway.okta import parse_password_import

    hook = load_openapi()["paths"]["/okta/password-import"]["post"]
    for example in hook["requestBody"]["content"]["application/json"]["examples"].values():
        request = parse_password_import(json.dumps(example["value"]).encode())
        assert request.username == example["value"]["data"]["context"]["credential"]["username"]
