"""tests/ops/podman.py's `prepare`: the container tests skip, saying why, only where containers
cannot run; it never asks a non-root user to do what needs root without saying so."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.ops import podman as pm


def test_without_root_and_without_podman_the_reason_names_the_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pm.Unavailable, match=r"needs root: run deploy/local-base-image\.sh"):
        pm.prepare()


def test_a_machine_where_no_container_starts_is_unavailable_with_podmans_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """podman and the base image are there, but even the plain base image does not start."""

    def fake(
        *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        if args[0] == "run":
            return subprocess.CompletedProcess(["podman", *args], 126, "", "OCI runtime error: x")
        return subprocess.CompletedProcess(["podman", *args], 0, "", "")

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/podman")
    monkeypatch.setattr(pm, "CONTAINERS_CONF", pm.SCRIPT)  # any existing file
    monkeypatch.setattr(pm, "podman", fake)
    with pytest.raises(pm.Unavailable, match=r"cannot run containers.*OCI runtime error: x"):
        pm.prepare()
