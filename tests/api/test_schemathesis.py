"""schemathesis against a real node's own OpenAPI document, with and without auth.

A `caxton serve` process on loopback ports serves ``/api/v1/openapi.json``; schemathesis loads
it from there and runs its engine (what ``st run`` does: the examples, coverage, fuzzing and
stateful phases) against the node, checking every answer with

* ``not_a_server_error``: no 5xx;
* ``status_code_conformance``: no status the document does not list for that operation;
* ``content_type_conformance``: the documented content type (JSON everywhere);
* ``response_schema_conformance``: the body matches the documented schema, which for every
  4xx and 5xx is the error envelope ``{"error": {"code", "message", "details"}}``.

Bounded: `MAX_EXAMPLES` per operation and phase, and `MAX_TIME` seconds per run (one run per
node). No operation is excluded: the destructive ones (DELETE, stop) mostly get generated names
that match no agent, and when the stateful phase does remove or stop an agent it deployed,
that is a legitimate sequence the node must answer correctly too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import schemathesis.engine
from schemathesis.engine import events

from caxton.security import TokenIssuer
from tests.nodeproc import NodeProcess, write_config

pytestmark = pytest.mark.slow

#: Examples per operation and phase.
MAX_EXAMPLES = 20
#: Seconds one run (one node) may take in all.
MAX_TIME = 30
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
SECRET = "schemathesis-test-secret-0123456789abcdef"
AUTH = '\n[security]\nauth_enabled = true\njwt_secret = "${JWT_SECRET}"\n'
#: ``?wait=`` is clamped to request_timeout - 1s: keep waits for replies that never come short.
NETWORKING = 'request_timeout = "3s"'


def _node(tmp_path: Path, *, auth: bool) -> NodeProcess:
    config = write_config(tmp_path, AUTH if auth else "", networking=NETWORKING)
    env = {"JWT_SECRET": SECRET} if auth else {}
    return NodeProcess(config, env=env)


@pytest.fixture(params=[False, True], ids=["no-auth", "auth"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[NodeProcess, bool]]:
    auth: bool = request.param
    with _node(tmp_path, auth=auth).start() as proc:
        yield proc, auth
        code, _ = proc.stop()
        assert code == 0


def _config(base_url: str, headers: dict[str, str]) -> schemathesis.Config:
    enabled = {"enabled": True}
    return schemathesis.Config.from_dict(
        {
            "seed": 9,
            "max-time": MAX_TIME,
            "base-url": base_url,
            "headers": headers,
            "request-timeout": 10,
            "workers": 1,
            "generation": {"max-examples": MAX_EXAMPLES},
            "checks": {"enabled": False, **{name: enabled for name in CHECKS}},
            "phases": {"stateful": {"max-steps": 20}},
        }
    )


def _failures(event: object) -> list[str]:
    recorder = getattr(event, "recorder", None)
    if recorder is None:
        return []
    found = []
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is not None:
                failure = check.failure_info.failure
                found.append(
                    f"{failure.operation} {failure.title}: {failure.message[:300]}\n"
                    f"  {check.failure_info.code_sample[:600]}  (case {case_id})"
                )
    return found


def test_the_node_conforms_to_its_own_openapi_document(node: tuple[NodeProcess, bool]) -> None:
    proc, auth = node
    base_url = proc.url("api", "")
    headers: dict[str, str] = {}
    if auth:
        token = TokenIssuer(SECRET, default_expiry=3600).create("schemathesis")
        headers["Authorization"] = f"Bearer {token}"
    schema = schemathesis.openapi.from_url(
        f"{base_url}/api/v1/openapi.json", config=_config(base_url, headers), timeout=10
    )
    operations = sum(1 for _ in schema.get_all_operations())
    cases = 0
    failures: list[str] = []
    errors: list[str] = []
    stop_reason = None
    for event in schemathesis.engine.from_schema(schema).execute():
        recorder = getattr(event, "recorder", None)
        if recorder is not None:
            cases += len(recorder.cases)
            failures += _failures(event)
        if isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(str(getattr(event, "value", None) or getattr(event, "exception", "")))
        if isinstance(event, events.EngineFinished):
            stop_reason = event.stop_reason
            failures += [f"{f.operation} {f.title}: {f.message[:300]}" for f in event.failures]
    unique = sorted(set(failures))
    print(
        f"schemathesis ({'auth' if auth else 'no auth'}): {operations} operations, {cases} "
        f"cases, {len(unique)} distinct failures, stopped: {stop_reason}"
    )
    report = os.environ.get("CAXTON_SCHEMATHESIS_REPORT")
    if report:
        Path(report).write_text("\n\n".join(unique + errors))
    assert not unique, "\n\n".join(unique[:20])
    assert not errors, errors[:5]
    assert operations >= 15
    assert cases >= 20 * operations
    # The node is still healthy after all of it.
    assert proc.get("api", "/health")[0] == 200
