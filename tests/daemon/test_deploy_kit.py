"""deploy/prometheus and deploy/grafana name only what the daemon serves, and promtool agrees.

A rule or a panel over a metric that does not exist never fires and never
draws: the worst kind of monitoring, the kind that looks fine. So every
metric name in every expression must be one that syncd.service.metrics
registers (with its type's suffixes), or Prometheus's own `up`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from syncd.service.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "syncd-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "syncd.json"
#: Series that Prometheus itself makes for every target.
PROMETHEUS_OWN = frozenset({"up"})
#: The alerts the issue asks for, each by what it watches.
ALERTS_FOR = {
    "daemon down": "SyncdDown",
    "runs failing": "SyncdRunsFailing",
    "drift persisting": "SyncdDriftPersisting",
    "users failing": "SyncdUsersFailing",
    "the source stale": "SyncdSourceStale",
    "no run ended well for long": "SyncdNoSuccessfulRun",
    "runs not finishing": "SyncdNotReady",
}


def served() -> set[str]:
    """Every series name the daemon's /metrics can hold, from its registry's families."""
    names = set()
    for family in Metrics(interval=300).registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def named_in(expression: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expression)
    return set(re.findall(r"\b(syncd_[a-z_]+|up)\b", without_strings))


def rule_expressions() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


@pytest.mark.parametrize("where", ["rules", "dashboard"])
def test_every_metric_named_is_one_the_daemon_serves(where: str):
    expressions = rule_expressions() if where == "rules" else dashboard_expressions()
    assert expressions
    known = served() | PROMETHEUS_OWN
    for expression in expressions:
        names = named_in(expression)
        assert names, expression
        assert names <= known, f"{sorted(names - known)} in {expression!r}"


def test_the_rules_cover_what_an_operator_must_hear_of():
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    assert set(ALERTS_FOR.values()) <= alerts


def test_the_dashboard_shows_the_metrics_of_the_alerts():
    drawn = set().union(*map(named_in, dashboard_expressions()))
    alerted = set().union(*map(named_in, rule_expressions())) - PROMETHEUS_OWN
    assert alerted <= drawn, sorted(alerted - drawn)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: apt-get install prometheus")
    return found


@pytest.mark.parametrize(
    "command", [["check", "rules", RULES.name], ["test", "rules", "syncd-rules.test.yml"]]
)
def test_promtool_accepts_the_rules_and_their_tests(command: list[str]):
    done = subprocess.run(
        [promtool(), *command],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
