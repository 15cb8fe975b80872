"""Build hook: compile the optional C hot path ``caxton.runtime.sandbox._accel`` into the wheel.

Caxton runs without it (the same work goes through ctypes, about 15% slower per message), so a
machine without a C compiler or the Python headers still installs: the hook warns and builds a
pure-Python wheel. Set ``CAXTON_BUILD_ACCEL=0`` to skip the extension on purpose.

In an editable install (``pip install -e .``) the module is compiled next to its source in
``src/caxton/runtime/``, where the editable ``.pth`` finds it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: The extension's C files (one module: `_accel.c` has its init function).
SOURCES = (
    Path("src/caxton/runtime/sandbox/_accel.c"),
    Path("src/caxton/runtime/sandbox/_accel_trace.c"),
)
TARGET = "caxton/runtime/sandbox/_accel"


def _compile(root: Path, output: Path) -> str | None:
    """Compile `SOURCES` (under ``root``) into the extension module ``output``; None, or why it
    failed."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0]!r} not found)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers ({include}/Python.h not found)"
    link = ["-bundle", "-undefined", "dynamic_lookup"] if sys.platform == "darwin" else ["-shared"]
    sources = [str(root / source) for source in SOURCES]
    command = [*cc, "-O2", "-fPIC", "-Wall", f"-I{include}", *sources, *link, "-o", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"{shlex.join(command)} failed:\n{result.stderr.strip()}"
    return None


class AccelBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles `_accel.c`; a failure leaves a working pure-Python build."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("CAXTON_BUILD_ACCEL", "1") == "0":
            return
        root = Path(self.root)
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        if version == "editable":
            output = root / "src" / (TARGET + suffix)
            why = _compile(root, output)
        else:
            self._tmp = tempfile.TemporaryDirectory()
            output = Path(self._tmp.name) / ("_accel" + suffix)
            why = _compile(root, output)
            if why is None:
                build_data["force_include"][str(output)] = TARGET + suffix
        if why is not None:
            print(f"caxton: building without the C hot path: {why}", file=sys.stderr)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()
