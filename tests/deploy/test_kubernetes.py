"""deploy/kubernetes: manifests validate, the overlay renders, and it fits the gateway it runs."""

from __future__ import annotations

import copy
import importlib.util
import shutil
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from gateway.app import create_app
from gateway.config import parse_config
from tests.deploy.promql import ROOT
from tests.redis_server import free_port

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAY = KUBERNETES / "overlays" / "production"
SECRETS_DIR = "/var/run/secrets/gateway/"
ENV = {
    "AZURE_TENANT_ID": "8eaef023-2b34-4da1-9baa-8bc8c9d6a490",
    "AZURE_CLIENT_ID": "0d1c9a8e-6f46-4d7b-8a59-1c2d3e4f5a6b",
    "REDIS_URL": "redis://redis.redis.svc:6379/0",
    "LEDGER_URL": "postgresql://gateway:pw@postgres.postgres.svc:5432/gateway",
}
APP_LABELS = {"app.kubernetes.io/name": "okta-password-gateway"}


def _load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_check", KUBERNETES / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_check()


@cache
def _rendered(directory: Path = OVERLAY) -> tuple[dict[str, Any], ...]:
    return tuple(check.render(directory))


def rendered() -> list[dict[str, Any]]:
    """The production overlay's objects (a deep copy, so a test may change them)."""
    return copy.deepcopy(list(_rendered()))


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (gateway,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return gateway


def container_ports(objects: list[dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(objects)["ports"]}


def config_data(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway config.yaml the overlay's ConfigMap carries."""
    data: dict[str, Any] = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    return data


def with_secret_files(node: Any, directory: Path) -> Any:
    """`node` with every `*_file` path under the Secret's mount moved to `directory` (written)."""
    if isinstance(node, list):
        return [with_secret_files(item, directory) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.endswith("_file") and isinstance(value, str) and value.startswith(SECRETS_DIR):
            path = directory / value.removeprefix(SECRETS_DIR)
            path.write_text(f"Bearer test-secret-for-{path.name}-0042\n", encoding="utf-8")
            value = str(path)
        out[key] = with_secret_files(value, directory)
    return out


def test_every_manifest_file_validates() -> None:
    files = check.manifest_files()
    kinds = set()
    for path in files:
        for obj in check.load_file(path):
            kinds.add(obj["kind"])
            assert check.problems(obj) == [], path
    assert kinds >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
        "ServiceMonitor",
        "Secret",
    }


@pytest.mark.parametrize("directory", [check.BASE, OVERLAY], ids=["base", "production"])
def test_rendered_objects_validate(directory: Path) -> None:
    objects = _rendered(directory)
    assert {o["kind"] for o in objects} >= {"Deployment", "ConfigMap", "ServiceMonitor"}
    for obj in objects:
        assert check.problems(obj) == [], obj["kind"]


def test_validation_refuses_unknown_fields() -> None:
    objects = rendered()
    security = container(objects)["securityContext"]
    security["readOnlyRootFileSystem"] = security.pop("readOnlyRootFilesystem")  # a typo
    assert any("readOnlyRootFileSystem" in p for p in check.problems(one(objects, "Deployment")))
    monitor = one(objects, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert check.problems(monitor) != []


def test_config_change_renames_config_map_and_rolls_pods(tmp_path: Path) -> None:
    copied = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copied)
    config = copied / "base" / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "# changed\n", encoding="utf-8")
    before, after = rendered(), check.render(copied / "overlays" / "production")
    names = [one(objects, "ConfigMap")["metadata"]["name"] for objects in (before, after)]
    assert names[0] != names[1]
    assert all(n.startswith("okta-password-gateway-config-") for n in names)
    for objects, name in zip((before, after), names, strict=True):
        volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
        assert [v["configMap"]["name"] for v in volumes if "configMap" in v] == [name]


def test_overlay_runs_several_replicas_with_a_budget() -> None:
    objects = rendered()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["metadata"]["namespace"] == "okta-password-gateway"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert container(objects)["image"].startswith("registry.example.com/")
    assert container(objects)["resources"]["requests"]["memory"]


def test_deployment_ports_are_the_configured_ones() -> None:
    objects = rendered()
    config = config_data(objects)
    assert container_ports(objects) == {
        "http": config["server"]["port"],
        "metrics": config["server"]["metrics_port"],
        "admin": config["admin"]["port"],
    }
    # Reachable from other pods: every listener binds all addresses.
    assert config["server"]["host"] == config["admin"]["host"] == "0.0.0.0"
    assert container(objects)["args"] == ["-c", "/etc/gateway/config.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    assert mounts["config"] == "/etc/gateway"
    assert mounts["secrets"] == SECRETS_DIR.rstrip("/")


def test_config_map_config_is_valid_with_the_secret(tmp_path: Path) -> None:
    objects = rendered()
    data = with_secret_files(config_data(objects), tmp_path)
    config = parse_config(yaml.safe_dump(data), env=ENV)
    assert config.cache.backend == "redis"  # replicas share limits
    assert config.migration.ledger == ENV["LEDGER_URL"]
    # Every variable the config uses comes from the Deployment's env, every file from the Secret.
    env_names = {e["name"] for e in container(objects)["env"]}
    assert env_names == set(ENV)
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (secret,) = [v["secret"] for v in volumes if "secret" in v]
    assert {item["path"] for item in secret["items"]} == {p.name for p in tmp_path.iterdir()}
    example = one(check.load_file(KUBERNETES / "secret.example.yaml"), "Secret")
    assert secret["secretName"] == example["metadata"]["name"]
    keys = {item["key"] for item in secret["items"]}
    keys |= {e["valueFrom"]["secretKeyRef"]["key"] for e in container(objects)["env"]}
    assert keys == set(example["stringData"])


def test_shutdown_fits_the_termination_grace_period() -> None:
    objects = rendered()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    command = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    grace = config_data(objects)["server"]["shutdown_grace_seconds"]
    # Endpoints drain during the sleep, then in-flight calls get the grace, then cleanup.
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + grace + 5


def test_security_context_is_hardened() -> None:
    objects = rendered()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    for each in pod["containers"]:
        security = each["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["runAsNonRoot"] is True
        assert security.get("privileged", False) is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "add" not in security["capabilities"]
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


def test_ingress_exposes_only_the_two_hook_paths() -> None:
    objects = rendered()
    config = config_data(objects)
    ingress = one(objects, "Ingress")["spec"]
    assert "defaultBackend" not in ingress
    paths = [p for rule in ingress["rules"] for p in rule["http"]["paths"]]
    assert sorted((p["path"], p["pathType"]) for p in paths) == sorted(
        [
            (config["okta"]["hook_path"], "Exact"),
            (config["migration"]["event_hook"]["path"], "Exact"),
        ]
    )
    service = one(objects, "Service")
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    for path in paths:
        assert path["backend"]["service"]["name"] == service["metadata"]["name"]
        assert targets[path["backend"]["service"]["port"]["name"]] == "http"
    assert [rule["host"] for rule in ingress["rules"]] == ingress["tls"][0]["hosts"]


def test_network_policy_ports_match_the_service() -> None:
    objects = rendered()
    ports = container_ports(objects)
    service = one(objects, "Service")["spec"]
    assert {p["targetPort"] for p in service["ports"]} == set(ports)
    assert {p["name"]: p["port"] for p in service["ports"]} == ports
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == service["selector"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    allowed = {}
    for rule in policy["ingress"]:
        (peer,) = rule["from"]
        (port,) = rule["ports"]
        assert port["port"] in ports and port["protocol"] == "TCP"
        allowed[port["port"]] = peer
    assert set(allowed) == set(ports)  # each listener once, each from one peer
    ingress_nginx = {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert allowed["http"]["namespaceSelector"]["matchLabels"] == ingress_nginx
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    assert allowed["metrics"]["namespaceSelector"]["matchLabels"] == monitoring
    assert allowed["admin"] == {
        "namespaceSelector": {"matchLabels": {"okta-password-gateway/admin": "true"}}
    }
    egress = sorted((p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"])
    assert egress == [(53, "TCP"), (53, "UDP"), (443, "TCP"), (5432, "TCP"), (6379, "TCP")]


def test_service_monitor_scrapes_the_metrics_port() -> None:
    objects = rendered()
    monitor = one(objects, "ServiceMonitor")["spec"]
    service = one(objects, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    # The alert rules select job="okta-password-gateway".
    assert service["metadata"]["labels"][monitor["jobLabel"]] == "okta-password-gateway"


@pytest.fixture
async def running_overlay(tmp_path: Path) -> AsyncIterator[dict[str, int]]:
    """The overlay's config, served on free loopback ports; its only directory is down.

    Redis and PostgreSQL are external to the deployment: here the memory store and a SQLite
    ledger stand in for them. Yields, per container port name, the free port it listens on.
    """
    data = with_secret_files(config_data(rendered()), tmp_path)
    ports = {"http": free_port(), "metrics": free_port(), "admin": free_port()}
    data["server"].update(host="127.0.0.1", port=ports["http"], metrics_port=ports["metrics"])
    data["admin"].update(host="127.0.0.1", port=ports["admin"])
    data["sources"][0]["authority"] = f"http://127.0.0.1:{free_port()}"  # nothing listens
    data["cache"] = {"backend": "memory"}
    data["migration"]["ledger"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = parse_config(yaml.safe_dump(data), env=ENV)
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", ports["http"]).start()
        yield ports
    finally:
        await runner.cleanup()


async def test_probes_hit_paths_the_gateway_serves(running_overlay: dict[str, int]) -> None:
    ports = running_overlay
    gateway = container(rendered())
    probes = [gateway[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{ports['http']}/readyz") as response:
            assert response.status == 503  # the directory is down ...
        for probe in probes:
            get = probe["httpGet"]
            url = f"http://127.0.0.1:{ports[get['port']]}{get['path']}"
            async with http.get(url) as response:
                assert response.status == 200, url  # ... and no probe fails because of it
        assert gateway["readinessProbe"]["httpGet"]["path"] != "/readyz"
        assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"


async def test_ingress_and_monitor_paths_are_served_where_they_point(
    running_overlay: dict[str, int],
) -> None:
    ports = running_overlay
    objects = rendered()
    paths = [
        p["path"]
        for rule in one(objects, "Ingress")["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    async with aiohttp.ClientSession() as http:
        for path in paths:
            async with http.post(f"http://127.0.0.1:{ports['http']}{path}", json={}) as response:
                assert response.status == 401, path  # the route exists and wants Okta's secret
        metrics_url = f"http://127.0.0.1:{ports[endpoint['port']]}{endpoint['path']}"
        async with http.get(metrics_url) as response:
            assert response.status == 200
            assert "gateway_build_info" in await response.text()
        async with http.get(f"http://127.0.0.1:{ports['http']}/metrics") as response:
            assert response.status == 404  # not on the port the Ingress reaches
