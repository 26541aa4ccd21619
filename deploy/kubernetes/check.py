"""Validate the Kubernetes manifests offline and render the Kustomize overlays.

Run by `make deploy-check`; tests/deploy/test_kubernetes.py imports it. Every manifest file a
kustomization lists, the example Secret, and every object `kubectl kustomize` renders (the base
and each overlay) is validated, strictly (unknown fields refused), against the Kubernetes JSON
schemas that the `kubernetes-validate` package bundles, for each version in KUBERNETES_VERSIONS.
The ServiceMonitor is a Prometheus Operator CRD with no bundled schema: it is validated against
the minimal schema vendored in schemas/servicemonitor.schema.json.

Rendering uses `kubectl kustomize` (Debian's `kubernetes-client` package on a fresh machine,
whose kustomize is v2; the kustomizations keep to what v2 and v5 render alike).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs; a dependency of kubernetes-validate
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

HERE = Path(__file__).resolve().parent
BASE = HERE / "base"
OVERLAYS = (HERE / "overlays" / "production",)
EXAMPLES = (HERE / "secret.example.yaml",)
SERVICE_MONITOR_SCHEMA = HERE / "schemas" / "servicemonitor.schema.json"
# The oldest Kubernetes this deployment supports (matchLabelKeys, unhealthyPodEvictionPolicy)
# and the newest schemas the package bundles.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize DIRECTORY` renders."""
    done = subprocess.run(  # noqa: S603 - a fixed program and a path of this repository
        ["kubectl", "kustomize", str(directory)],  # noqa: S607 - kubectl from PATH, as make installs it
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def manifest_files() -> list[Path]:
    """Every file a kustomization lists under `resources`, and the examples."""
    files: list[Path] = []
    for kustomization in sorted(HERE.rglob("kustomization.yaml")):
        spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        for entry in spec.get("resources", []):
            path = kustomization.parent / entry
            if path.is_file():
                files.append(path)
    return [*files, *EXAMPLES]


def load_file(path: Path) -> list[dict[str, Any]]:
    """The objects in one YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@cache
def _service_monitor_validator() -> Any:
    schema = json.loads(SERVICE_MONITOR_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(obj: dict[str, Any]) -> list[str]:
    """Why one object is not valid (empty when it is), for every Kubernetes version checked."""
    kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
    if kind == "ServiceMonitor":
        return [
            f"{kind}/{name}: {'.'.join(map(str, err.path))}: {err.message}"
            for err in _service_monitor_validator().iter_errors(obj)
        ]
    found = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = ".".join(map(str, err.path))
            found.append(f"{kind}/{name} (Kubernetes {version}): {where}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            found.append(f"{kind}/{name}: no schema for {obj.get('apiVersion')} in {version}")
    return found


def main() -> int:
    """Validate files and rendered output; print one line per problem; 0 when there is none."""
    found: list[str] = []
    count = 0
    for path in manifest_files():
        for obj in load_file(path):
            count += 1
            found += [f"{path.relative_to(HERE)}: {line}" for line in problems(obj)]
    for directory in (BASE, *OVERLAYS):
        try:
            rendered = render(directory)
        except RuntimeError as err:
            found.append(str(err))
            continue
        for obj in rendered:
            count += 1
            found += [f"rendered {directory.relative_to(HERE)}: {line}" for line in problems(obj)]
    for line in found:
        print(line, file=sys.stderr)
    if found:
        return 1
    versions = ", ".join(KUBERNETES_VERSIONS)
    print(f"deploy/kubernetes: {count} objects valid (Kubernetes {versions}), overlays render")
    return 0


if __name__ == "__main__":
    sys.exit(main())
