"""The Prometheus rules load in Prometheus and behave: `promtool check rules` and `promtool test rules`.

The rules live in a PrometheusRule (k8s/base/monitoring/prometheus-rules.yaml); promtool reads plain rule
files, so its `spec` is written out as rules.yaml next to a copy of the unit tests, which name that file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[1] / "k8s" / "base" / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
UNIT_TESTS = MONITORING / "prometheus-rules.test.yaml"

requires_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package `prometheus`; `make system-deps` installs it as root)",
)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return tmp_path


def _promtool(*args: str, cwd: Path) -> None:
    done = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


@requires_promtool
def test_rules_load(rules_dir: Path) -> None:
    _promtool("check", "rules", "rules.yaml", cwd=rules_dir)


@requires_promtool
def test_rules_unit_tests_pass(rules_dir: Path) -> None:
    _promtool("test", "rules", UNIT_TESTS.name, cwd=rules_dir)


def test_every_alert_is_tested_both_ways() -> None:
    """Each alert has a unit test where it fires and one where it stays quiet."""
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    checks = [check for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for check in test.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert len(alerts) >= 6
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"
