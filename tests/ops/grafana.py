"""docs/grafana/caxton.json read as Grafana reads it: its panels, and their queries as PromQL.

Grafana substitutes its variables before it sends a query to Prometheus; `promql` does the
same with fixed values (``$__rate_interval`` a duration, ``$job`` the job of the shipped scrape
configs, ``$instance`` the regex of "All"), so the text can be checked by ``promtool`` and
evaluated by a real Prometheus server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.support import ROOT

__all__ = ["DASHBOARD", "Query", "load", "metric_names", "panels", "promql", "queries"]

DASHBOARD = ROOT / "docs" / "grafana" / "caxton.json"
#: (panel title, PromQL as written in the dashboard)
Query = tuple[str, str]


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every panel target's ``expr``, and the selector inside each ``label_values(...)`` query
    of a template variable."""
    found = [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", text)
        assert match, f"variable {variable['name']}: not a label_values(selector, label) query"
        found.append((f"variable {variable['name']}", match.group(1)))
    return found


def promql(expr: str, rate_interval: str = "5m") -> str:
    """`expr` with the dashboard's variables replaced as Grafana would; any other ``$`` left
    is an error (a variable the dashboard does not define)."""
    text = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    text = text.replace("$job", "caxton").replace("$instance", ".*")
    assert "$" not in text, f"an unknown variable in {expr!r}"
    return text


def metric_names(expr: str) -> set[str]:
    """The ``caxton_`` metric names an expression reads."""
    return set(re.findall(r"(?<![\w:])caxton_\w+(?![\w:])", expr))
