"""The node's own nats-server child, with real nats-server processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import stat
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from caxton.cluster import NatsServer, nats_endpoint
from caxton.cluster._child import parse_line
from caxton.config.schema import Secret
from caxton.errors import ClusterError
from tests.nodeproc import free_port
from tests.support import eventually

from .conftest import alive, coordination


async def test_a_client_with_the_token_connects_and_one_without_is_refused(tmp_path: Path) -> None:
    async with NatsServer(coordination(), tmp_path) as server:
        client = await nats.connect(**server.endpoint.connect_options())
        try:
            subscription = await client.subscribe("caxton.test")
            await client.publish("caxton.test", b"hello")
            message = await subscription.next_msg(timeout=2)
            assert message.data == b"hello"
        finally:
            await client.close()
        with pytest.raises(NatsError, match="Authorization Violation"):
            await nats.connect(
                servers=[server.client_url], allow_reconnect=False, connect_timeout=2
            )
        varz = await server.monitor("/varz")
        assert varz["host"] == "127.0.0.1"
        assert varz["server_name"] == server.name
        assert varz["cluster"]["name"] == "caxton"
        config_file = tmp_path / "nats" / "nats-server.json"
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600  # it holds the token
        pid = server.pid
        assert pid is not None
    assert not alive(pid)
    assert not config_file.exists()


async def _peers(server: NatsServer) -> set[str]:
    routez = await server.monitor("/routez")
    return {route["remote_name"] for route in routez["routes"]}


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0)], ids=["in-order", "reverse-order"])
async def test_three_nodes_from_one_seed_list_form_a_full_mesh(
    tmp_path: Path, order: tuple[int, int, int]
) -> None:
    ports = tuple(free_port() for _ in range(3))
    servers = [
        NatsServer(coordination(port, seeds=ports), tmp_path / f"node{index}")
        for index, port in enumerate(ports)
    ]
    try:
        for index in order:
            await servers[index].start()
        names = {server.name for server in servers}
        assert len(names) == 3
        for server in servers:

            async def meshed(server: NatsServer = server) -> bool:
                return await _peers(server) == names - {server.name}

            await eventually(meshed, within=10)
    finally:
        for server in servers:
            await server.aclose()


async def test_the_child_is_restarted_after_kill_9(tmp_path: Path) -> None:
    async with NatsServer(coordination(), tmp_path, restart_backoff=(0.05, 1.0)) as server:
        url, first = server.client_url, server.pid
        assert first is not None
        assert server.up
        os.kill(first, signal.SIGKILL)

        async def restarted() -> bool:
            return server.up and server.pid != first

        await eventually(restarted, within=10)
        assert server.restarts == 1
        assert server.client_url == url  # same ports: clients reconnect to the same URL
        client = await nats.connect(**server.endpoint.connect_options())
        await client.close()


async def test_a_missing_binary_names_the_key_to_fix(tmp_path: Path) -> None:
    config = coordination(nats_server=tmp_path / "no-such-nats-server")
    with pytest.raises(ClusterError) as raised:
        await NatsServer(config, tmp_path).start()
    message = str(raised.value)
    assert str(tmp_path / "no-such-nats-server") in message
    assert "[coordination] nats_server" in message


async def test_a_binary_that_is_not_nats_server_fails_with_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "fake-nats-server"
    fake.write_text("#!/bin/sh\necho 'I am not nats-server' >&2\nexit 3\n", encoding="utf-8")
    fake.chmod(0o755)
    with pytest.raises(ClusterError) as raised:
        await NatsServer(coordination(nats_server=fake), tmp_path).start()
    message = str(raised.value)
    assert f"nats-server {fake} exited with code 3 while starting" in message
    assert "I am not nats-server" in message


async def test_a_route_port_in_use_names_bind_addr(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ClusterError) as raised:
            await NatsServer(coordination(port), tmp_path).start()
        assert loop.time() - started < 5
    message = str(raised.value)
    assert f"coordination.bind_addr 127.0.0.1:{port} is in use" in message
    assert "address already in use" in message  # nats-server's own line


async def test_log_lines_reach_the_logger_at_their_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster.nats")
    nobody = free_port()  # a seed nobody listens on: nats-server logs an [ERR] per attempt
    async with NatsServer(coordination(seeds=(nobody,)), tmp_path):

        async def route_error_logged() -> bool:
            return any(
                record.levelno == logging.ERROR and "connect to route" in record.getMessage()
                for record in caplog.records
                if record.name == "caxton.cluster.nats"
            )

        await eventually(route_error_logged, within=10)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "Server is ready" in infos


@pytest.mark.parametrize(
    ("line", "level", "text"),
    [
        ("[12] [INF] Server is ready", logging.INFO, "Server is ready"),
        ("[12] [WRN] slow consumer", logging.WARNING, "slow consumer"),
        ("[12] [ERR] route error", logging.ERROR, "route error"),
        ("[12] [FTL] bad config", logging.CRITICAL, "bad config"),
        ("[12] [DBG] detail", logging.DEBUG, "detail"),
        ("[12] 2026/12/03 17:40:00.123456 [WRN] stamped", logging.WARNING, "stamped"),
        ("something else", logging.INFO, "something else"),
    ],
)
def test_log_levels_are_mapped(line: str, level: int, text: str) -> None:
    assert parse_line(line) == (level, text)


async def test_start_twice_and_close_twice(tmp_path: Path) -> None:
    server = NatsServer(coordination(), tmp_path)
    await server.start()
    with pytest.raises(ClusterError, match="running"):
        await server.start()
    await server.aclose()
    await server.aclose()  # idempotent
    assert server.pid is None


async def test_nats_url_starts_no_child(tmp_path: Path) -> None:
    config = coordination(nats_url="nats://nats.internal:4222")
    async with nats_endpoint(config, tmp_path) as endpoint:
        assert endpoint.client_url == "nats://nats.internal:4222"
        assert endpoint.connect_options() == {"servers": ["nats://nats.internal:4222"]}
        assert endpoint.token is None
    assert not (tmp_path / "nats").exists()


async def test_only_nodes_with_the_cluster_secret_join(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster.nats")
    ports = tuple(free_port() for _ in range(3))
    secrets = ("the-shared-secret", "the-shared-secret", "a-wrong-secret")
    servers = [
        NatsServer(
            coordination(port, seeds=ports, cluster_secret=Secret(secret)),
            tmp_path / f"node{index}",
        )
        for index, (port, secret) in enumerate(zip(ports, secrets, strict=True))
    ]
    try:
        for server in servers:
            await server.start()
        good, other, wrong = servers

        async def refused_and_said_so() -> bool:
            meshed = await _peers(good) == {other.name} and await _peers(other) == {good.name}
            return meshed and any(
                "Authorization Violation" in record.getMessage() and record.levelno == logging.ERROR
                for record in caplog.records
            )

        await eventually(refused_and_said_so, within=10)
        assert await _peers(wrong) == set()
    finally:
        for server in servers:
            await server.aclose()
    for record in caplog.records:  # neither secret is ever logged (the key's name may be)
        message = record.getMessage()
        assert not any(secret in message for secret in secrets), message


async def test_an_unwritable_data_directory_is_a_clear_error(tmp_path: Path) -> None:
    server = NatsServer(coordination(node_name="node-1"), tmp_path)
    (tmp_path / "nats").write_text("a file where the directory goes", encoding="utf-8")
    with pytest.raises(ClusterError, match="cannot write the nats-server configuration"):
        await server.start()


async def test_a_failed_restart_is_logged_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="caxton.cluster.nats")
    port = free_port()
    # 1.5 s before each restart: time for the squatter to take the port, even under load.
    async with NatsServer(coordination(port), tmp_path, restart_backoff=(1.5, 1.5)) as server:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with socket.socket() as squatter:  # takes the route port while the child is down
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

            async def taken() -> bool:
                if alive(first):
                    return False
                try:
                    squatter.bind(("127.0.0.1", port))
                except OSError:  # the kernel may take a moment to release it
                    return False
                squatter.listen()
                return True

            await eventually(taken, within=5)

            async def failed_once() -> bool:
                return any(
                    record.levelno == logging.ERROR
                    and f"coordination.bind_addr 127.0.0.1:{port} is in use" in record.getMessage()
                    for record in caplog.records
                )

            await eventually(failed_once, within=5)
            assert not server.up
        await eventually(lambda: _true(server.up), within=5)  # the port is free again
        assert server.restarts >= 2


async def _true(value: bool) -> bool:
    return value


async def test_the_child_is_out_of_the_nodes_process_group(tmp_path: Path) -> None:
    """A Ctrl-C in the node's terminal reaches the node, which then stops the child in order."""
    async with NatsServer(coordination(), tmp_path) as server:
        assert server.pid is not None
        assert os.getpgid(server.pid) != os.getpgid(0)
