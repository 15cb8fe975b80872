"""Per-agent budgets and quotas: one agent's log and key/value floods stay its own problem."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from caxton.config.schema import RuntimeConfig
from caxton.runtime import AgentSpec, Engine, MemoryKv, Runtime, abi
from tests.support import ROOT, eventually, fast_runtime, message, wat

from .conftest import Deploy, Recorder

LOG_LINES = 100  # lines per second in the log tests
LOG_BYTES = 64 * 1024


class Lines(logging.Handler):
    """Counts what reaches an agent's logger (its lines at INFO, the summaries at WARNING)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(f"caxton.agent.{name}")
        self.info = 0
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.INFO:
            self.info += 1
        elif record.levelno == logging.WARNING:
            self.warnings.append(record.getMessage())

    def __enter__(self) -> Lines:
        self.logger.addHandler(self)
        self.level_before = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            fast_runtime(agent_log_lines_per_second=LOG_LINES, agent_log_bytes_per_second=1 << 30),
            id="lines",
        ),
        pytest.param(
            fast_runtime(agent_log_lines_per_second=1 << 30, agent_log_bytes_per_second=LOG_BYTES),
            id="bytes",
        ),
    ],
)
async def test_a_log_flood_is_held_to_the_agents_rate_budget(
    runtime: Runtime, deploy: Deploy, config: RuntimeConfig
) -> None:
    """H1: an agent that logs 64 KiB and sends itself the message again (for ever)."""
    with Lines("flood") as lines:
        await _flood_logs(runtime, deploy, config, lines)


async def _flood_logs(
    runtime: Runtime, deploy: Deploy, config: RuntimeConfig, lines: Lines
) -> None:
    await deploy("flood", wat("logloop"))
    await deploy("echo", wat("echo"))
    t0 = time.monotonic()
    runtime.deliver_nowait("flood", message("flood"))
    await asyncio.sleep(1.5)  # real time: the budgets are rates, the flood runs in a worker
    await runtime.stop_agent("flood")
    elapsed = time.monotonic() - t0
    # A line is 1 KiB: both budgets allow one second's worth at once, then their rate.
    per_second = LOG_LINES if config.agent_log_lines_per_second == LOG_LINES else LOG_BYTES // 1024
    allowed = per_second * (1 + elapsed) + 1
    logged = lines.info
    stats = runtime.agent_statistics("flood")
    assert stats.messages_handled > 20  # it did flood: 64 lines per message
    assert per_second / 2 <= logged <= allowed
    assert stats.logs_dropped >= stats.messages_handled * 64 - logged
    dropped = runtime.statistics().logs_dropped["flood"]
    assert dropped[0] == stats.logs_dropped
    assert dropped[1] == dropped[0] * 1024
    # Drops are summarised once per second, the last interval too once the flood stopped.

    async def all_summarised() -> bool:  # the last interval ends, the runtime's ticker reports
        return sum(int(s.split()[3]) for s in lines.warnings) == stats.logs_dropped

    await eventually(all_summarised, what="every dropped line was summarised")
    summaries = lines.warnings
    assert 1 <= len(summaries) <= elapsed + 3
    assert all(
        s.startswith("agent flood: dropped ") and s.endswith("in the last 1s: log rate budget")
        for s in summaries
    )
    assert sum(int(s.split()[3]) for s in summaries) == stats.logs_dropped
    assert runtime.recent_logs("echo") == []  # other agents untouched
    runtime.deliver_nowait("echo", message("echo", "still here"))


@pytest.mark.parametrize(
    ("config", "stored_keys"),
    [
        pytest.param(fast_runtime(agent_kv_max_keys=250), 250, id="keys"),
        # each key costs 8 + 1000 bytes: 49 fit in 50,000
        pytest.param(fast_runtime(agent_kv_max_bytes=50_000), 49, id="bytes"),
    ],
)
async def test_a_kv_flood_stops_at_the_agents_quota(
    runtime: Runtime, deploy: Deploy, recorder: Recorder, stored_keys: int
) -> None:
    """H4: a write over the quota returns -8 (documented) and keeps nothing."""
    await deploy("hoard", wat("kvflood"))
    runtime.deliver_nowait("hoard", message("hoard"))
    name, _data, error = await recorder.failure()
    assert name == "hoard"
    assert error.message == "caxton_handle returned -8"
    assert isinstance(runtime.kv, MemoryKv)
    stored = runtime.kv.data["hoard"]
    assert len(stored) == stored_keys
    assert sum(len(k) + len(v) for k, v in stored.items()) <= runtime.config.agent_kv_max_bytes


@pytest.mark.parametrize("config", [fast_runtime(agent_kv_cache_size=4096)])
async def test_kv_memory_stays_within_the_cache_whatever_the_agent_stores(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("hoard", wat("kvflood"))
    runtime.deliver_nowait("hoard", message("hoard"))
    await recorder.failure()  # the flood ran into the default quota (10,000 keys)
    assert isinstance(runtime.kv, MemoryKv)
    assert len(runtime.kv.data["hoard"]) == runtime.config.agent_kv_max_keys
    kv = runtime._agents["hoard"].kv
    assert kv is not None
    assert kv.cached_bytes <= 4096
    assert kv.usage() == (10_000, 10_000 * 1008)


@pytest.mark.parametrize("config", [fast_runtime(agent_kv_cache_size=64)])
async def test_kv_reads_what_it_wrote_when_nothing_fits_the_cache(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    await deploy("counter", wat("kvcount"))
    for _ in range(5):
        runtime.deliver_nowait("counter", message("counter"))
    replies = [(await recorder.reply())["content"] for _ in range(5)]
    assert replies == [1, 2, 3, 4, 5]


def test_the_quota_code_is_the_one_the_sdk_and_docs_name() -> None:
    header = (ROOT / "sdk" / "c" / "caxton.h").read_text()
    assert f"#define CAXTON_ERR_QUOTA ({abi.ERR_QUOTA})" in header
    assert f"| `{abi.ERR_QUOTA}` | over quota |" in (ROOT / "docs" / "agents.md").read_text()
    taken = {abi.ERR_MALFORMED, abi.ERR_TOO_LARGE, abi.ERR_NOT_PERMITTED, abi.ERR_BACKPRESSURE}
    assert abi.ERR_QUOTA not in taken | {-5, -6}  # -5/-6: the SDK's JSON helpers


@pytest.mark.parametrize("config", [fast_runtime(agent_max_timers=250)])
async def test_a_timer_flood_stops_at_the_agents_timer_cap(
    runtime: Runtime, deploy: Deploy, recorder: Recorder
) -> None:
    """Attack 11: 200k timers from one agent stalled the loop; now `schedule` returns -8."""
    await deploy("ticker", wat("timerflood"))
    await deploy("echo", wat("echo"))
    runtime.deliver_nowait("ticker", message("ticker"))
    name, _data, error = await recorder.failure()
    assert (name, error.message) == ("ticker", "caxton_handle returned -8")

    async def on_the_loop() -> bool:  # the accepted timers reach the loop
        return runtime._timers is not None and len(runtime._timers) >= 250

    await eventually(on_the_loop, what="250 timers reached the loop")
    assert runtime._timers is not None
    assert len(runtime._timers) == 250
    assert runtime._agents["ticker"].timers == 250
    runtime.deliver_nowait("echo", message("echo", "still here"))
    assert (await recorder.reply())["content"]["content"] == "still here"


async def test_a_fired_timer_frees_its_place_under_the_cap(
    runtime: Runtime, deploy: Deploy
) -> None:
    await deploy("echo", wat("echo"))
    body = message("echo", "later").replace(b'"sender": "client"', b'"sender": "echo"')
    runtime.schedule(0.05, "echo", body, "echo")
    assert runtime._agents["echo"].timers == 1

    async def fired() -> bool:
        return runtime._agents["echo"].timers == 0

    await eventually(fired, what="the timer fired")
    assert runtime._agents["echo"].timers == 0


LOOPERS = 3  # more than the runtime's two workers


async def test_looping_agents_do_not_starve_a_well_behaved_one(
    config: RuntimeConfig, engine: Engine, recorder: Recorder
) -> None:
    """Attack 11: 11 of 33 echo probes timed out while loopers spun on every worker."""
    timeout = config.execution_timeout
    runtime = Runtime(
        config, engine=engine, events=recorder, external=recorder.external, max_restarts=10_000
    )
    async with runtime:
        spin = await asyncio.to_thread(engine.compile, wat("spin"))
        echo = await asyncio.to_thread(engine.compile, wat("echo"))
        for i in range(LOOPERS):
            await runtime.start_agent(AgentSpec(name=f"loop-{i}"), spin)
        await runtime.start_agent(AgentSpec(name="echo"), echo)
        for _ in range(20):
            for i in range(LOOPERS):
                runtime.deliver_nowait(f"loop-{i}", message(f"loop-{i}"))
        # Each looper is known to be one once its first message ran into the deadline.
        names = [f"loop-{i}" for i in range(LOOPERS)]

        async def known() -> bool:
            return all(runtime.agent_statistics(n).failures for n in names)

        await eventually(known)
        await asyncio.sleep(timeout)  # the ones running then are slow ones, in their slots
        latencies = []
        t_end = time.monotonic() + 10 * timeout
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            runtime.deliver_nowait("echo", message("echo", "ping"))
            assert (await recorder.reply(within=5.0))["content"]["content"] == "ping"
            latencies.append(time.monotonic() - t0)
            await asyncio.sleep(timeout / 3)  # probes spread over the loopers' deadlines
        failures = [runtime.agent_statistics(f"loop-{i}").failures for i in range(LOOPERS)]
    # Echo answers without waiting for a looper: at most all workers but one run loopers
    # (before, it waited for whole batches of their messages, each one `timeout` long).
    assert max(latencies) < timeout, latencies
    # And the loopers still take their turns (each of their messages runs into the deadline).
    assert sum(failures) >= 10
    assert min(failures) >= 2


@pytest.mark.parametrize("fixture", ["busy", "logloop"])
async def test_hogs_under_the_deadline_do_not_starve_a_well_behaved_one(
    engine: Engine, recorder: Recorder, fixture: str
) -> None:
    """Agents that keep sending to themselves and never reach the deadline: ``busy`` (tens of
    milliseconds a message) kept its worker for a whole batch (64 messages), ``logloop``
    (fast messages) for 64 batches in a row before the shared queue was served: an echo probe
    waited seconds. Batches and runs in a row now end after a time slice."""
    config = fast_runtime(execution_timeout=1.0)
    runtime = Runtime(config, engine=engine, events=recorder, external=recorder.external)
    async with runtime:
        busy = await asyncio.to_thread(engine.compile, wat(fixture))
        echo = await asyncio.to_thread(engine.compile, wat("echo"))
        hogs = [f"hog-{i}" for i in range(LOOPERS)]
        for name in hogs:
            await runtime.start_agent(AgentSpec(name=name), busy)
        await runtime.start_agent(AgentSpec(name="echo"), echo)
        for name in hogs:
            runtime.deliver_nowait(name, message(name))
        await asyncio.sleep(0.3)  # real time: the hogs are under way on every worker
        latencies = []
        for _ in range(10):
            t0 = time.monotonic()
            runtime.deliver_nowait("echo", message("echo", "ping"))
            assert (await recorder.reply(within=10.0))["content"]["content"] == "ping"
            latencies.append(time.monotonic() - t0)
            await asyncio.sleep(0.1)  # probes spread over the hogs' time slices
        handled = [runtime.agent_statistics(name).messages_handled for name in hogs]
        failures = [runtime.agent_statistics(name).failures for name in hogs]
    assert failures == [0] * LOOPERS  # never the deadline
    assert min(handled) >= 5  # and each hog had its turns
    assert max(latencies) < 0.5, latencies


@pytest.mark.parametrize("config", [fast_runtime(mailbox_max_bytes=2 * 1024 * 1024)])
async def test_a_mailbox_holds_at_most_its_bytes_of_large_messages(
    runtime: Runtime, deploy: Deploy
) -> None:
    """A self-amplifying agent sending itself ~200 KB messages filled its 1,024-message
    mailbox: ~200 MB of one agent's messages in memory (RSS +300 MB in a node process)."""
    await deploy("big", wat("bigamp"))
    runtime.deliver_nowait("big", message("big"))
    agent = runtime._agents["big"]
    most = 0
    for _ in range(40):
        await asyncio.sleep(0.025)  # a sample of the mailbox every 25 ms for a second
        most = max(most, sum(map(len, list(agent.mailbox))))
    assert runtime.agent_statistics("big").messages_handled > 10  # it floods
    assert 0 < most <= 2 * 1024 * 1024
    await runtime.stop_agent("big")  # its queued messages stay, and the count agrees
    assert agent.offered_bytes - agent.popped_bytes == sum(map(len, list(agent.mailbox)))
