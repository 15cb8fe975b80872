"""deploy/kubernetes/: linted, validated against Kubernetes' schemas (offline), rendered, and
read for what docs/operations.md ("Kubernetes") promises of it.

``yamllint`` (with deploy/.yamllint.yaml) and ``kubernetes-validate --strict`` (schemas shipped
in the package, no cluster needed) check every manifest and the rendered kustomization. The
rendering is tests/ops/kustomize.py's (``kubectl kustomize``, where installed, must agree
with it). On the rendering: the StatefulSet's pods' stable names through the headless Service
are exactly the ``seeds`` of the ConfigMap's production.toml, every ``${VAR}`` of that file
comes from the pod's environment, the probes, the grace period and the volumes match the
configuration, and ``caxton config check`` accepts the file as the pods will see it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from caxton.config import parse_duration, parse_size
from caxton.server import SHUTDOWN_MARGIN
from tests.ops.configdiff import uncommented_changes
from tests.ops.dockerfile import stages, venv_tool
from tests.ops.kustomize import Object, by_kind, one, render, strip_hash
from tests.support import ROOT
from tests.tls import self_signed

K8S = ROOT / "deploy" / "kubernetes"
YAMLLINT_CONFIG = ROOT / "deploy" / ".yamllint.yaml"
#: The deployment guide's requests and limits for the Caxton container.
GUIDE_RESOURCES = {
    "requests": {"memory": "2Gi", "cpu": "1000m"},
    "limits": {"memory": "4Gi", "cpu": "2000m"},
}
ENV = {"POD_NAME": "caxton-0", "JWT_SECRET": "j" * 40, "CLUSTER_SECRET": "c" * 40}


@pytest.fixture(scope="module")
def rendered() -> list[Object]:
    return render(K8S)


def _pod(objects: list[Object]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def _container(objects: list[Object]) -> dict[str, Any]:
    (container,) = _pod(objects)["containers"]
    assert isinstance(container, dict)
    return container


def _config_text(objects: list[Object]) -> str:
    data = one(objects, "ConfigMap")["data"]
    assert list(data) == ["production.toml"]
    text = data["production.toml"]
    assert isinstance(text, str)
    return text


def _config(objects: list[Object]) -> dict[str, Any]:
    return tomllib.loads(_config_text(objects))


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _quantity_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Gi|Mi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {"Gi": 1 << 30, "Mi": 1 << 20}[unit]


def test_yamllint(tmp_path: Path) -> None:
    files = sorted(str(p) for p in (ROOT / "deploy").rglob("*.y*ml"))
    assert any("kubernetes" in f for f in files)
    command = [venv_tool("yamllint", "yamllint"), "--strict", "-c", str(YAMLLINT_CONFIG)]
    result = subprocess.run([*command, *files], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter lints: a document with a duplicate key and a trailing space is refused.
    bad = tmp_path / "bad.yaml"
    bad.write_text("---\na: 1\na: 2 \n")
    refused = subprocess.run([*command, str(bad)], capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "duplication of key" in refused.stdout


def test_manifests_and_rendering_validate_offline(rendered: list[Object], tmp_path: Path) -> None:
    validate = [venv_tool("kubernetes-validate", "kubernetes-validate"), "--strict", "--quiet"]
    files = sorted(str(p) for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(rendered))
    result = subprocess.run(
        [*validate, *files, str(out)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # It validates: a StatefulSet without its selector is refused.
    broken = [dict(o) for o in rendered]
    sts = next(o for o in broken if o["kind"] == "StatefulSet")
    sts["spec"] = {k: v for k, v in sts["spec"].items() if k != "selector"}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(sts))
    refused = subprocess.run(
        [*validate, str(tmp_path / "broken.yaml")], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0


def test_the_rendering_matches_kubectl_kustomize(rendered: list[Object]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the test's own rendering is checked alone")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0 and "unknown command" in result.stderr:
        pytest.skip(f"this kubectl cannot kustomize: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    theirs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    # kustomize names the ConfigMap after a hash of its content, so that a change rolls the pods.
    (config_map,) = by_kind(theirs, "ConfigMap")
    assert re.fullmatch(r"caxton-config-[a-z0-9]{10}", config_map["metadata"]["name"])

    def key(objects: list[Object]) -> dict[tuple[str, str], Object]:
        return {(o["kind"], o["metadata"]["name"]): o for o in objects}

    assert key(strip_hash(theirs)) == key(rendered)


def test_everything_in_the_guides_namespace(rendered: list[Object]) -> None:
    assert one(rendered, "Namespace")["metadata"]["name"] == "caxton-system"
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "caxton-system", obj["metadata"]


def test_seeds_are_the_statefulsets_pods(rendered: list[Object]) -> None:
    """The seeds name every pod of the StatefulSet through its headless Service, and only them."""
    sts = one(rendered, "StatefulSet")
    headless = one(rendered, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # Pods must resolve each other before they are ready (they join while they start).
    assert headless["spec"]["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    coordination = _config(rendered)["coordination"]
    assert coordination["cluster_enabled"] is True
    route_port = _port(coordination["bind_addr"])
    (cluster_port,) = [p for p in headless["spec"]["ports"] if p["port"] == route_port]
    container_ports = {p["name"]: p["containerPort"] for p in _container(rendered)["ports"]}
    assert container_ports[cluster_port["targetPort"]] == route_port
    name, service = sts["metadata"]["name"], headless["metadata"]["name"]
    pods = [f"{name}-{i}.{service}:{route_port}" for i in range(sts["spec"]["replicas"])]
    assert coordination["seeds"] == pods
    # Each pod advertises its own stable name, and is named after its pod.
    env = {e["name"]: e for e in _container(rendered)["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert coordination["advertise_addr"] == f"${{POD_NAME}}.{service}:{route_port}"
    assert coordination["node_name"] == "${POD_NAME}"


def test_secrets_and_variables_come_from_the_pod(rendered: list[Object]) -> None:
    text = _config_text(rendered)
    used = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    assert used == {"JWT_SECRET", "CLUSTER_SECRET", "POD_NAME"}
    env = {e["name"]: e for e in _container(rendered)["env"]}
    assert used <= env.keys()
    for secret in ("JWT_SECRET", "CLUSTER_SECRET"):
        ref = env[secret]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "caxton-secrets"
    config = _config(rendered)
    assert config["security"]["jwt_secret"] == "${JWT_SECRET}"
    assert config["coordination"]["cluster_secret"] == "${CLUSTER_SECRET}"


def test_config_is_mounted_where_caxton_config_path_says(rendered: list[Object]) -> None:
    container = _container(rendered)
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = Path(env["CAXTON_CONFIG_PATH"])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(rendered)["volumes"]}
    (config_volume,) = [v for v in volumes.values() if "configMap" in v]
    assert config_volume["configMap"]["name"] == one(rendered, "ConfigMap")["metadata"]["name"]
    assert mounts[config_volume["name"]]["mountPath"] == str(path.parent)
    assert path.name in one(rendered, "ConfigMap")["data"]


def test_state_on_the_claim_template_and_a_read_only_root(rendered: list[Object]) -> None:
    sts = one(rendered, "StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in _container(rendered)["volumeMounts"]}
    config = _config(rendered)
    assert mounts[claim["metadata"]["name"]] == str(
        Path(config["coordination"]["local_state_path"]).parent
    )
    storage = _quantity_bytes(claim["spec"]["resources"]["requests"]["storage"])
    assert parse_size(config["runtime"]["temp_storage_limit"]) < storage
    security = _container(rendered)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert mounts["tmp"] == "/tmp"


def test_runs_as_the_images_user(rendered: list[Object]) -> None:
    _, (_, final) = stages((ROOT / "deploy" / "Dockerfile").read_text())
    uid, gid = (int(x) for x in final.all("USER")[0].split(":"))
    pod_security = _pod(rendered)["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (uid, gid)
    assert pod_security["fsGroup"] == gid  # the volume is writable by the node


def test_probes_on_the_api_port(rendered: list[Object]) -> None:
    container = _container(rendered)
    config = _config(rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    scheme = "HTTPS" if config["networking"]["tls_enabled"] else "HTTP"
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == _port(config["networking"]["bind_address"])
        assert get["scheme"] == scheme
    assert ports["metrics"] == _port(config["networking"]["metrics_address"])


def test_grace_period_covers_prestop_drain_delay_and_agent_shutdown(
    rendered: list[Object],
) -> None:
    pod = _pod(rendered)
    config = _config(rendered)
    command = _container(rendered)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    drain_delay = parse_duration(config["networking"]["drain_delay"])
    shutdown = parse_duration(config["runtime"]["agent_shutdown_timeout"])
    # The node's own bound: SIGTERM to exit within drain_delay + shutdown + the margin.
    needed = pre_stop + drain_delay + shutdown + SHUTDOWN_MARGIN
    assert pod["terminationGracePeriodSeconds"] >= needed + 5
    # The pod is out of the endpoints before the node stops taking connections.
    readiness = _container(rendered)["readinessProbe"]
    assert pre_stop >= readiness["periodSeconds"]


def test_guides_resources_and_config_fitting_them(rendered: list[Object]) -> None:
    resources = _container(rendered)["resources"]
    assert resources == GUIDE_RESOURCES
    runtime = _config(rendered)["runtime"]
    limit = _quantity_bytes(resources["limits"]["memory"])
    # The agents' memory leaves room for the process and its nats-server child.
    assert parse_size(runtime["memory_limit"]) <= limit - (512 << 20)
    assert float(runtime["cpu_quota"]) <= int(resources["limits"]["cpu"].rstrip("m")) / 1000


def test_disruption_budget_and_service(rendered: list[Object]) -> None:
    labels = one(rendered, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    pdb = one(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    service = one(rendered, "Service", "caxton-service")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    container_ports = {p["name"]: p["containerPort"] for p in _container(rendered)["ports"]}
    assert {port: container_ports[target] for port, target in ports.items()} == {
        8080: 8080,
        9090: 9090,
    }


def test_every_change_to_the_shipped_production_toml_is_commented(
    rendered: list[Object],
) -> None:
    """Each key whose value differs from deploy/production.toml, or that is added or dropped,
    sits under a ``# KUBERNETES:`` comment (the dropped ones are named in one)."""
    assert uncommented_changes(_config_text(rendered), "KUBERNETES") == []


def test_caxton_config_check_accepts_the_configmap(rendered: list[Object], tmp_path: Path) -> None:
    """As a pod sees it: the secrets and POD_NAME in the environment, the TLS Secret's files
    at the configured paths (made here; only those three paths are changed)."""
    text = _config_text(rendered)
    cert, key = self_signed("caxton-k8s-test")
    for name, content in (("tls.crt", cert), ("tls.key", key), ("ca.crt", cert)):
        (tmp_path / name).write_bytes(content)
        assert text.count(f'"/tls/{name}"') == 1
        text = text.replace(f'"/tls/{name}"', f'"{tmp_path / name}"')
    path = tmp_path / "production.toml"
    path.write_text(text)
    check = [sys.executable, "-m", "caxton", "config", "check", str(path)]
    env = {**os.environ, **ENV}
    result = subprocess.run(check, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # Without the Secret's values the pod would not start, and says why.
    env.pop("CLUSTER_SECRET")
    refused = subprocess.run(check, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "CLUSTER_SECRET" in refused.stderr
