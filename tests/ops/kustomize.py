"""Render deploy/kubernetes/kustomization.yaml without kustomize, for the tests.

Only the parts the kustomization uses: ``resources`` (files), ``namespace`` (set on every
namespaced object), ``configMapGenerator`` with ``files`` (one key per file, named after it),
and ``images`` (``newName``/``newTag`` of containers whose image is ``name``). kustomize also
appends a hash of the content to a generated ConfigMap's name (and to the references to it);
`strip_hash` takes that away, so a rendering here can be compared with ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

_SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}


def load_all(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[Object]:
    (kustomization,) = load_all(directory / "kustomization.yaml")
    unsupported = set(kustomization) - _SUPPORTED
    assert not unsupported, f"the test's renderer does not know {sorted(unsupported)}"
    objects: list[Object] = []
    for resource in kustomization.get("resources", []):
        objects.extend(load_all(directory / resource))
    for generator in kustomization.get("configMapGenerator", []):
        assert set(generator) == {"name", "files"}, generator
        data = {Path(f).name: (directory / f).read_text() for f in generator["files"]}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for container in _containers(objects):
            if container["image"] == image["name"]:
                name = image.get("newName", image["name"])
                container["image"] = f"{name}:{image['newTag']}" if "newTag" in image else name
    return objects


def _containers(objects: list[Object]) -> list[Object]:
    found: list[Object] = []
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        found.extend(spec.get("containers", []))
    return found


def strip_hash(objects: list[Object]) -> list[Object]:
    """``objects`` with kustomize's ``-<hash>`` suffix taken off generated ConfigMaps' names and
    off the pod volumes that refer to them."""
    result = copy.deepcopy(objects)
    renamed: dict[str, str] = {}
    for obj in result:
        if obj["kind"] == "ConfigMap":
            name = obj["metadata"]["name"]
            plain = re.sub(r"-[a-z0-9]{10}$", "", name)
            renamed[name] = plain
            obj["metadata"]["name"] = plain
    for obj in result:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                ref = volume["configMap"]["name"]
                volume["configMap"]["name"] = renamed.get(ref, ref)
    return result


def by_kind(objects: list[Object], kind: str) -> list[Object]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Object], kind: str, name: str | None = None) -> Object:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
