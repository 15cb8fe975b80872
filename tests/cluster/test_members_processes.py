"""`caxton cluster members|remove` against real `caxton serve` processes: a node killed with
``kill -9`` is dead on the other within the bound docs/cluster.md states, is removed, and
joins again as a new incarnation when it is started again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from caxton.cli import cli
from caxton.cluster.membership import DEAD_AFTER
from tests.nodeproc import NodeProcess, free_port, write_config
from tests.support import wait_until

pytestmark = pytest.mark.slow

P = 0.2  # probe_interval, seconds
#: kill -9 -> dead is at most (DEAD_AFTER + 1) intervals; the margin is for a loaded machine.
BOUND = (DEAD_AFTER + 1) * P + 1.0


def node_config(directory: Path, name: str, port: int, seeds: tuple[int, ...]) -> Path:
    listed = ", ".join(f'"127.0.0.1:{seed}"' for seed in seeds)
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(
        directory,
        coordination=f'cluster_enabled = true\nnode_name = "{name}"\n'
        f'bind_addr = "127.0.0.1:{port}"\nseeds = [{listed}]\nprobe_interval = "200ms"\n',
        log_level="info",
    )


def caxton_cluster(node: NodeProcess, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["cluster", *args], env={"CAXTON_SERVER": node.url("api", "")})
    return result.exit_code, result.output


def members(node: NodeProcess) -> dict[str, dict[str, Any]]:
    code, output = caxton_cluster(node, "members", "-o", "json")
    assert code == 0, output
    return {member["name"]: member for member in json.loads(output)["members"]}


def test_a_killed_node_is_dead_then_removed_then_joins_again(
    tmp_path: Path, leftover_pids: list[int]
) -> None:
    ports = (free_port(), free_port())
    one = NodeProcess(node_config(tmp_path / "one", "one", ports[0], ports))
    two = NodeProcess(node_config(tmp_path / "two", "two", ports[1], ports))
    try:
        one.start(timeout=30)
        two.start(timeout=30)
        for node in (one, two):
            assert node.proc is not None
            leftover_pids.append(node.proc.pid)

        def both_alive() -> dict[str, dict[str, Any]] | None:
            seen = members(one)
            return (
                seen
                if {m["state"] for m in seen.values()} == {"alive"} and len(seen) == 2
                else None
            )

        before = wait_until(both_alive, 10, what="one sees both nodes alive")["two"]
        code, table = caxton_cluster(one, "members")
        assert code == 0, table
        assert "one *" in table

        assert two.proc is not None
        two.proc.kill()  # kill -9
        killed = time.monotonic()
        two.proc.communicate()

        def two_dead() -> bool:
            return bool(members(one)["two"]["state"] == "dead")

        wait_until(two_dead, 10, interval=0.02, what="the killed node is dead")
        took = time.monotonic() - killed
        assert took <= BOUND, f"dead after {took:.2f} s, more than {BOUND:.2f} s"

        code, output = caxton_cluster(one, "remove", "two")
        assert (code, output.strip()) == (0, "removed member two (it was dead)")
        assert set(members(one)) == {"one"}
        code, output = caxton_cluster(one, "remove", "two")
        assert code == 1
        assert "no member called 'two'" in output

        two.start(timeout=30)  # a new incarnation of the removed node is welcome again
        assert two.proc is not None
        leftover_pids.append(two.proc.pid)

        def back() -> dict[str, Any] | None:
            again = members(one).get("two")
            return again if again is not None and again["state"] == "alive" else None

        again = wait_until(back, 10, what="the restarted node joins again")
        assert again["incarnation"] > before["incarnation"]
    finally:
        two.__exit__()
        one.__exit__()
    log = (tmp_path / "one" / "logs" / "caxton.log").read_text()
    said = [json.loads(line).get("message") for line in log.splitlines() if line.strip()]
    for line in (
        "member two joined (alive)",
        "member two is suspect (was alive)",
        "member two is dead (was suspect)",
        "member two removed",
    ):
        assert line in said, line
