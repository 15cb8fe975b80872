"""The Kubernetes manifests' configuration, run for real: three containers of the image as the
StatefulSet's three pods would run, with podman on the host's network.

No Kubernetes runs here, so this does by hand what the kubelet would do with the rendered
kustomization (tests/ops/kustomize.py): each "pod" gets the ConfigMap's production.toml at
/config, a TLS Secret's three files at /tls (a CA and one certificate for
``*.caxton-cluster``, serverAuth and clientAuth, made here), ``POD_NAME`` and the two secrets in
its environment, the StatefulSet's user, a read-only root with only ``/tmp`` writable beside
its volume, and no capabilities. The headless Service's names (``caxton-0.caxton-cluster``...)
resolve through ``--add-host``. What must change because the three share one network is
changed, each change asserted against the manifest's text: the listeners' ports (distinct
ones on 127.0.0.1), tracing off (no collector runs here).

It checks what the manifests promise: the pods start with TLS on the API and mutual TLS on the
routes, join as one cluster under their pods' names through the seeds and the advertised
names, a message to one pod reaches an agent on another, and each pod stops on SIGTERM with
exit 0 well within the grace period left after the preStop hook.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import tomllib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from caxton.config import parse_duration
from tests.nodeproc import free_port
from tests.ops import podman as pm
from tests.ops.kustomize import one, render
from tests.support import EXAMPLES, ROOT
from tests.tls import make_pki

pytestmark = pytest.mark.slow

K8S = ROOT / "deploy" / "kubernetes"
SECRETS = {"JWT_SECRET": "k8s-test-jwt-secret-0123456789abcdef", "CLUSTER_SECRET": "c" * 40}


CONFIGMAP_TOML = "the ConfigMap's production.toml"


def _pod_config(text: str, service: str, ports: list[dict[str, int]], me: int) -> str:
    text = pm.on_loopback(
        text,
        ports[me],
        advertise=f"${{POD_NAME}}.{service}:7946",
        seeds={f"caxton-{i}.{service}": pod["route"] for i, pod in enumerate(ports)},
        what=CONFIGMAP_TOML,
    )
    return pm.replace_once(
        text, "enable_tracing = true", "enable_tracing = false", what=CONFIGMAP_TOML
    )


def test_the_statefulsets_pods_form_a_cluster(
    image: str, tmp_path: Path, report: list[str]
) -> None:
    objects = render(K8S)
    sts = one(objects, "StatefulSet")
    service = sts["spec"]["serviceName"]
    pod_spec: dict[str, Any] = sts["spec"]["template"]["spec"]
    (container_spec,) = pod_spec["containers"]
    env = {e["name"]: e.get("value") for e in container_spec["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container_spec["volumeMounts"]}
    security = pod_spec["securityContext"]
    user = f"{security['runAsUser']}:{security['runAsGroup']}"
    assert container_spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
    config_text = one(objects, "ConfigMap")["data"]["production.toml"]
    grace = pod_spec["terminationGracePeriodSeconds"]
    pre_stop = float(container_spec["lifecycle"]["preStop"]["exec"]["command"][1])

    names = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    ports = [{k: free_port() for k in ("api", "metrics", "admin", "route")} for _ in names]
    apis = [f"https://127.0.0.1:{p['api']}" for p in ports]
    pki = make_pki(tmp_path / "pki", routes=True, names=(f"*.{service}",))
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir(mode=0o755)
    for target, source in (
        ("tls.crt", pki.server_cert),
        ("tls.key", pki.server_key),
        ("ca.crt", pki.ca),
    ):
        (tls_dir / target).write_bytes(source.read_bytes())
        (tls_dir / target).chmod(0o644)  # the Secret's defaultMode 0440, group 10001 (fsGroup)
    context = ssl.create_default_context(cafile=str(pki.ca))
    hosts = [arg for name in names for arg in ("--add-host", f"{name}.{service}:127.0.0.1")]

    containers: list[pm.Container] = []
    with ExitStack() as stack:
        for i, name in enumerate(names):
            config_dir = tmp_path / name
            pm.readable_file(
                config_dir,
                Path(env["CAXTON_CONFIG_PATH"]).name,
                _pod_config(config_text, service, ports, i),
            )
            data = stack.enter_context(pm.volume())
            container = pm.run(
                pm.unique(name),
                "--user",
                user,
                "--cap-drop=ALL",
                "--security-opt=no-new-privileges",
                "--read-only",
                "--read-only-tmpfs=false",
                "--tmpfs",
                mounts["tmp"],
                *hosts,
                "-v",
                f"{config_dir}:{mounts['config']}:ro",
                "-v",
                f"{tls_dir}:{mounts['tls']}:ro",
                "-v",
                f"{data}:{mounts['data']}",
                "-e",
                f"CAXTON_CONFIG_PATH={env['CAXTON_CONFIG_PATH']}",
                "-e",
                f"POD_NAME={name}",
                *(a for key, value in SECRETS.items() for a in ("-e", f"{key}={value}")),
            )
            stack.callback(container.remove)
            containers.append(container)
        start = time.monotonic()
        for api in apis:
            pm.wait_status(f"{api}/ready", context=context)
        token = containers[0].exec("caxton", "token", "create", "--subject", "test").strip()
        deadline = time.monotonic() + 20
        while True:
            views = [pm.members(api, token, context) for api in apis]
            if all(view == dict.fromkeys(names, "alive") for view in views):
                break
            assert time.monotonic() < deadline, f"no cluster of {names}: {views}"
            time.sleep(0.1)
        report.append(f"three pods' containers ready and meshed: {time.monotonic() - start:.1f} s")

        wasm = base64.b64encode((EXAMPLES / "echo.wasm").read_bytes()).decode()
        deploy = json.dumps({"name": "pod-echo", "wasm": wasm, "node": names[2]}).encode()
        code, raw = pm.http_post(f"{apis[2]}/api/v1/agents", deploy, token=token, context=context)
        assert code == 201, raw
        # Pod 0 learns of the agent on pod 2 through the registry (until then the message is
        # answered `failure`, unknown receiver); then the message crosses and the reply returns.
        body = json.dumps({"receiver": "pod-echo", "performative": "request", "content": "hi"})
        deadline = time.monotonic() + 10
        while True:
            code, raw = pm.http_post(
                f"{apis[0]}/api/v1/messages?wait=5s", body.encode(), token=token, context=context
            )
            assert code == 200, raw
            reply = json.loads(raw)
            if reply["performative"] == "inform":
                break
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c.name}\n{c.logs()[-4000:]}" for c in containers)
                raise AssertionError(f"no reply from pod-echo on {names[2]}: {reply}\n{logs}")
            time.sleep(0.2)
        assert (reply["sender"], reply["content"]) == ("pod-echo", "hi")

        # SIGTERM as the kubelet sends it after the preStop hook; the rest of the grace period
        # is the budget. The drain_delay is real here (the ConfigMap's).
        budget = grace - pre_stop
        drain_delay = parse_duration(tomllib.loads(config_text)["networking"]["drain_delay"])
        for container in containers:
            began = time.monotonic()
            pm.podman("stop", "-t", str(int(budget)), container.name, timeout=budget + 30)
            took = time.monotonic() - began
            assert container.state()["ExitCode"] == 0, container.logs()[-3000:]
            assert drain_delay <= took < budget, f"stop took {took:.1f} s"
        report.append(
            f"SIGTERM to exit 0 (drain_delay {drain_delay:.0f} s): last took {took:.1f} s"
        )
