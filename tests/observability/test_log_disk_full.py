"""A full log disk prints one line, not a traceback per dropped line.

A child process writes Caxton's log to a file under ``RLIMIT_FSIZE`` (the file can grow to a
few KiB, then every write fails with EFBIG as on a full disk; Python ignores ``SIGXFSZ``), then
the limit is lifted ("space returns") and it logs again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import logging, resource, sys
from pathlib import Path
from caxton.config import ObservabilityConfig
from caxton.observability.logging import configure_logging

path = Path(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
setup = configure_logging(ObservabilityConfig(log_file=path, log_format="json"))
log = logging.getLogger("caxton.test")
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
for i in range(500):
    log.warning("line %d %s", i, "x" * 100)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.warning("after the disk has room again")
setup.close()
"""


def test_a_full_log_disk_reports_once_and_counts_what_it_dropped(tmp_path: Path) -> None:
    path = tmp_path / "caxton.log"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert "Logging error" not in done.stderr
    assert len(lines) == 2, done.stderr
    assert str(path) in lines[0]
    assert "File too large" in lines[0]
    assert "dropped" in lines[1]
    text = path.read_text(errors="replace")
    assert "after the disk has room again" in text
    assert "log lines were dropped" in text
