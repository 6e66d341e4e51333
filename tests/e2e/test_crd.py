"""The CRD teaches its fields, refuses bad resources at admission naming the field, and
keeps the status the operator writes."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from promotion_operator.core.run import (
    HISTORY_LENGTH,
    ActionKind,
    HistoryEntry,
    Phase,
    PlannedChange,
    PreviousTarget,
    Run,
    to_status,
)
from tests.e2e.spec_strategies import MAX_ANNOTATIONS_BYTES, MAX_NAME, largest_spec
from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import apply_json, explain, manifest, refusal

pytestmark = pytest.mark.e2e

VALID: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
}
ERROR_RATE = (
    "sum(rate(seldon_api_executor_server_requests_seconds_count"
    '{deployment_name="{{target}}",predictor_name="{{canary}}",code!~"2.."}[{{interval}}]))\n'
    "/ sum(rate(seldon_api_executor_server_requests_seconds_count"
    '{deployment_name="{{target}}",predictor_name="{{canary}}"}[{{interval}}]))\n'
)
CANARY: dict[str, Any] = {
    **VALID,
    "strategy": "Canary",
    "canary": {
        "steps": [
            {"setWeight": 10},
            {"analysis": {"templates": ["error-rate"]}},
            {"setWeight": 50},
            {"pause": {}},
            {"pause": {"duration": "2m"}},
        ]
    },
    "analysis": {"templates": [{"name": "error-rate", "query": ERROR_RATE, "max": 0.01}]},
}
# Limits of the Canary fields in crds/modelpromotions.deploy.mlops.dev.yaml.
MAX_STEPS = 20
MAX_STEP_TEMPLATES = 5
MAX_TEMPLATES = 10
MAX_QUERY = 4000
MAX_QUERIES = 6000  # all queries together (a CEL rule)
MAX_MATCH_LABELS = 3  # spec.bake.alerts.matchLabels
MAX_MATCH_VALUE = 63
MAX_BAKE_TEMPLATES = 3
MAX_LABEL_NAME = 63
MAX_DURATION_CHARS = 32
# Limits of spec.approval.
MAX_APPROVAL_GROUPS = 20
MAX_GROUP = 128
KUBECTL_COPY = "kubectl.kubernetes.io/last-applied-configuration"
CRD = Path(__file__).resolve().parents[2] / "crds" / "modelpromotions.deploy.mlops.dev.yaml"
KOPF_COPY = "kopf.deploy.mlops.dev/last-handled-configuration"


def _canary_step(index: int, step: dict[str, Any]) -> dict[str, Any]:
    """CANARY with step ``index`` replaced by ``step``."""
    spec = copy.deepcopy(CANARY)
    spec["canary"]["steps"][index] = step
    return spec


def _canary_template(**fields: Any) -> dict[str, Any]:
    """CANARY with its template changed: ``fields`` set, those given as None removed."""
    spec = copy.deepcopy(CANARY)
    template = spec["analysis"]["templates"][0]
    template.update(fields)
    spec["analysis"]["templates"][0] = {k: v for k, v in template.items() if v is not None}
    return spec


def _without(spec: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key != field}


def test_kubectl_explain_teaches_the_spec(control_plane: ControlPlane, crds: None) -> None:
    text = explain(control_plane, "modelpromotion.spec")
    assert "What to promote, where to, and how." in text
    for field in ("source", "target", "overrides", "verification", "rollback", "gitops"):
        assert field in text
    timeout = explain(control_plane, "modelpromotion.spec.verification.timeout")
    assert "How long the target may take to become Available" in timeout


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        pytest.param(
            {
                "source": {"namespace": "staging", "name": "iris"},
                "target": {"namespace": "staging"},
            },
            "spec.target",
            "must differ from spec.source",
            id="target-is-source",
        ),
        pytest.param(
            {**VALID, "verification": {"timeout": "-5m"}},
            "spec.verification.timeout",
            "should match",
            id="negative-timeout",
        ),
        pytest.param(
            {**VALID, "verification": {"timeout": "3d"}},
            "spec.verification.timeout",
            "should match",
            id="unparsable-timeout",
        ),
        pytest.param(
            {**VALID, "verification": {"timeout": "48h"}},
            "spec.verification.timeout",
            "between 1s and 24h",
            id="timeout-too-long",
        ),
        pytest.param(
            {**VALID, "strategy": "BlueGreen"},
            "spec.strategy",
            'supported values: "Replace", "Canary"',
            id="unknown-strategy",
        ),
        pytest.param(
            {"source": {"namespace": "staging"}, "target": {"namespace": "production"}},
            "spec.source.name",
            "Required value",
            id="source-without-name",
        ),
        pytest.param(
            {**VALID, "overrides": {"components": [{"name": "classifier"}]}},
            "spec.overrides.components[0]",
            "needs an image or a modelUri",
            id="override-without-change",
        ),
        pytest.param(
            {**VALID, "overrides": {"labels": {"big": "x" * 150_000}}},
            "spec.overrides.labels.big",
            "Too long",
            id="label-value-too-long",
        ),
        pytest.param(
            {**VALID, "source": {"namespace": "staging", "name": "a..b"}},
            "spec.source.name",
            "should match",
            id="name-not-a-dns-subdomain",
        ),
        pytest.param(
            {**VALID, "overrides": {"replicas": -1}},
            "spec.overrides.replicas",
            "should be greater than or equal to 0",
            id="negative-replicas",
        ),
        # Canary
        pytest.param(
            {**CANARY, "strategy": "Replace"},
            "spec.canary",
            "Forbidden: spec.canary is only for spec.strategy Canary",
            id="canary-with-replace",
        ),
        pytest.param(
            _without(CANARY, "strategy"),
            "spec.canary",
            "Forbidden: spec.canary is only for spec.strategy Canary",
            id="canary-with-the-default-strategy",
        ),
        pytest.param(
            _without(CANARY, "canary"),
            "spec.canary",
            "Required value: spec.canary is required when spec.strategy is Canary",
            id="canary-strategy-without-canary",
        ),
        pytest.param(
            _canary_step(1, {"setWeight": 20, "pause": {}}),
            "spec.canary.steps[1]",
            "exactly one of shadow, setWeight, analysis or pause; this one has several",
            id="step-with-two-actions",
        ),
        pytest.param(
            _canary_step(1, {}),
            "spec.canary.steps[1]",
            "exactly one of shadow, setWeight, analysis or pause; this one is empty",
            id="empty-step",
        ),
        pytest.param(
            _canary_step(1, {"pause": None}),
            "spec.canary.steps[1]",
            "this one is empty",
            id="step-with-a-null-pause",
        ),
        pytest.param(
            _canary_step(0, {"analysis": {"templates": ["error-rate"]}}),
            "spec.canary.steps",
            "spec.canary.steps[0] must be a setWeight or a shadow",
            id="first-step-not-a-setweight",
        ),
        pytest.param(
            {**CANARY, "canary": {"steps": []}},
            "spec.canary.steps",
            "should have at least 1 items",
            id="no-steps",
        ),
        pytest.param(
            _canary_step(0, {"setWeight": 0}),
            "spec.canary.steps[0].setWeight",
            "should be greater than or equal to 1",
            id="setweight-0",
        ),
        pytest.param(
            _canary_step(2, {"setWeight": 100}),
            "spec.canary.steps[2].setWeight",
            "should be less than or equal to 99",
            id="setweight-100",
        ),
        pytest.param(
            _canary_step(1, {"analysis": {"templates": ["error-rat"]}}),
            "spec.canary.steps",
            "every template an analysis step of spec.canary.steps names must be defined in "
            "spec.analysis.templates",
            id="unknown-template",
        ),
        pytest.param(
            _without(CANARY, "analysis"),
            "spec.canary.steps",
            "must be defined in spec.analysis.templates",
            id="analysis-step-without-templates",
        ),
        pytest.param(
            _canary_step(1, {"analysis": {"templates": ["error-rate", "error-rate"]}}),
            "spec.canary.steps[1].analysis.templates[1]",
            'Duplicate value: "error-rate"',
            id="template-twice-in-a-step",
        ),
        pytest.param(
            _canary_template(max=None),
            "spec.analysis.templates[0]",
            "each spec.analysis.templates entry needs min, max or both",
            id="template-without-min-or-max",
        ),
        pytest.param(
            _canary_template(min=0.5, max=0.1),
            "spec.analysis.templates[0].min",
            "spec.analysis.templates[].min must not be greater than max",
            id="min-above-max",
        ),
        pytest.param(
            _canary_template(count=3, failureLimit=3),
            "spec.analysis.templates[0].failureLimit",
            "spec.analysis.templates[].failureLimit must be less than count",
            id="failure-limit-equal-to-count",
        ),
        pytest.param(
            _canary_template(failureLimit=1),
            "spec.analysis.templates[0].failureLimit",
            "must be less than count",
            id="failure-limit-above-the-default-count",
        ),
        pytest.param(
            _canary_template(interval="0s"),
            "spec.analysis.templates[0].interval",
            "spec.analysis.templates[].interval must be between 1s and 1h",
            id="interval-0s",
        ),
        pytest.param(
            _canary_template(interval="2h"),
            "spec.analysis.templates[0].interval",
            "must be between 1s and 1h",
            id="interval-2h",
        ),
        pytest.param(
            _canary_step(4, {"pause": {"duration": "25h"}}),
            "spec.canary.steps[4].pause.duration",
            "spec.canary.steps[].pause.duration must be between 1s and 24h",
            id="pause-25h",
        ),
        pytest.param(
            _canary_template(query="sum(up) > 0"),
            "spec.analysis.templates[0].query",
            "should match",
            id="query-with-a-comparison",
        ),
        pytest.param(
            {
                **CANARY,
                "analysis": {
                    "templates": [
                        {"name": "error-rate", "query": "x" * MAX_QUERY, "max": 1},
                        {"name": "other", "query": "y" * (MAX_QUERIES - MAX_QUERY + 1), "max": 1},
                    ]
                },
            },
            "spec.analysis.templates",
            f"the queries of spec.analysis.templates must be at most {MAX_QUERIES} characters",
            id="queries-too-long-together",
        ),
        pytest.param(
            {**CANARY, "analysis": {"templates": CANARY["analysis"]["templates"] * 2}},
            "spec.analysis.templates[1]",
            'Duplicate value: {"name":"error-rate"}',
            id="two-templates-of-one-name",
        ),
        # Approval
        pytest.param(
            {**VALID, "approval": {"required": "yes"}},
            "spec.approval.required",
            'Invalid value: "string"',
            id="approval-required-not-a-boolean",
        ),
        pytest.param(
            {**VALID, "approval": {"groups": [f"g{i}" for i in range(MAX_APPROVAL_GROUPS + 1)]}},
            "spec.approval.groups",
            f"must have at most {MAX_APPROVAL_GROUPS} items",
            id="too-many-approval-groups",
        ),
        pytest.param(
            {**VALID, "approval": {"groups": ["g" * (MAX_GROUP + 1)]}},
            "spec.approval.groups[0]",
            f"may not be more than {MAX_GROUP} bytes",
            id="approval-group-too-long",
        ),
        pytest.param(
            {**VALID, "approval": {"groups": ["release\nmanagers"]}},
            "spec.approval.groups[0]",
            "should match",
            id="approval-group-with-a-newline",
        ),
        pytest.param(
            {**VALID, "approval": {"groups": ["Entwickler-\u00c4"]}},
            "spec.approval.groups[0]",
            "should match",
            id="approval-group-not-ascii",
        ),
        pytest.param(
            {**VALID, "approval": {"groups": ['release "managers"']}},
            "spec.approval.groups[0]",
            "should match",
            id="approval-group-with-a-quote",
        ),
        pytest.param(
            {**VALID, "approval": {"groups": [""]}},
            "spec.approval.groups[0]",
            "should be at least 1 chars long",
            id="empty-approval-group",
        ),
        pytest.param(
            {**VALID, "approval": {"groups": ["release-managers", "release-managers"]}},
            "spec.approval.groups[1]",
            'Duplicate value: "release-managers"',
            id="approval-group-twice",
        ),
    ],
)
def test_invalid_promotion_is_refused_naming_the_field(
    control_plane: ControlPlane, crds: None, spec: dict[str, Any], field: str, words: str
) -> None:
    refused = refusal(control_plane, spec)
    assert f"{field}: " in refused, refused
    assert words in refused, refused


def test_source_and_target_are_immutable(control_plane: ControlPlane, crds: None) -> None:
    control_plane.kubectl(
        "apply", "-n", "default", "-f", "-", input_text=manifest("immutable", VALID)
    )
    changed = {**VALID, "target": {"namespace": "elsewhere"}}
    refused = control_plane.kubectl(
        "apply", "-n", "default", "-f", "-", input_text=manifest("immutable", changed), check=False
    )
    assert refused.returncode != 0
    assert "spec.target is immutable" in refused.stderr
    control_plane.kubectl("delete", "mp", "immutable", "-n", "default")


def test_a_canary_is_accepted_with_its_defaults(control_plane: ControlPlane, crds: None) -> None:
    spec = apply_json(control_plane, "canary-defaults", CANARY)["spec"]
    control_plane.kubectl("delete", "mp", "canary-defaults", "-n", "default")
    assert spec["strategy"] == "Canary"
    # Steps as written: an empty pause (wait for a person) is kept, not pruned.
    assert spec["canary"] == CANARY["canary"]
    assert spec["analysis"]["templates"] == [
        {
            "name": "error-rate",
            "query": ERROR_RATE,
            "max": 0.01,
            "interval": "30s",
            "count": 1,
            "failureLimit": 0,
        }
    ]


def test_kubectl_explain_teaches_the_canary(control_plane: ControlPlane, crds: None) -> None:
    steps = explain(control_plane, "modelpromotion.spec.canary.steps")
    assert "each exactly one of" in steps
    assert "The first step must be a shadow or" in steps
    for field in ("setWeight", "analysis", "pause"):
        assert f"{field}\t<" in steps, steps
    assert "kubectl annotate mp NAME deploy.mlops.dev/resume=true" in steps
    assert "inconclusive" in steps
    query = explain(control_plane, "modelpromotion.spec.analysis.templates.query")
    for placeholder in ("{{target}}", "{{namespace}}", "{{canary}}", "{{stable}}", "{{interval}}"):
        assert placeholder in query
    assert "min <= value <= max" in query
    strategy = explain(control_plane, "modelpromotion.spec.strategy")
    assert "Canary moves traffic to the promoted spec" in strategy


def test_the_canary_status_is_kept_and_its_weight_is_a_column(
    control_plane: ControlPlane, crds: None
) -> None:
    name = "canary-status"
    apply_json(control_plane, name, CANARY)
    canary = {
        "step": 1,
        "weight": 10,
        "stepStartedAt": "2026-03-01T10:00:05Z",
        "canaryPredictor": "iris-canary",
        "stablePredictor": "default",
        "analysis": [
            {
                "template": "error-rate",
                "dueAt": "2026-03-01T10:00:35Z",
                "taken": 2,
                "failed": 1,
                "inconclusive": 1,
            }
        ],
        "measurements": [
            {
                "template": "error-rate",
                "result": "Inconclusive",
                "max": 0.01,
                "message": "no data",
                "at": "2026-03-01T10:00:05Z",
            },
            {
                "template": "error-rate",
                "value": 0.5,
                "min": 0.0,
                "max": 0.01,
                "result": "Failed",
                "message": "0.5 is above max 0.01",
                "at": "2026-03-01T10:00:35Z",
            },
        ],
    }
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": "Analyzing",
        "message": "step 2 of 5: analysis error-rate",
        "lastTransitionTime": "2026-03-01T10:00:05Z",
    }
    plan_steps = ["set weight 10", "analysis error-rate", "set weight 50", "promote"]
    status: dict[str, Any] = {
        "phase": "Analyzing",
        "observedGeneration": 1,
        "source": "staging/iris",
        "target": "production/iris",
        "conditions": [ready],
        "plan": {"action": "Update", "steps": plan_steps},
        "canary": canary,
    }
    control_plane.kubectl(
        "patch", "mp", name, "-n", "default", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    got = json.loads(control_plane.kubectl("get", "mp", name, "-n", "default", "-o", "json").stdout)
    # The status is structural: a field the CRD did not declare would be gone.
    assert got["status"]["canary"] == canary
    assert got["status"]["plan"]["steps"] == plan_steps
    table = control_plane.kubectl("get", "mp", name, "-n", "default").stdout.splitlines()
    assert table[0].split() == ["NAME", "SOURCE", "TARGET", "PHASE", "REASON", "WEIGHT", "AGE"]
    assert table[1].split()[1:6] == [
        "staging/iris", "production/iris", "Analyzing", "Analyzing", "10"
    ]  # fmt: skip
    for phase in ("Paused", "Analyzing"):
        control_plane.kubectl(
            "patch", "mp", name, "-n", "default", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"phase": phase}}),
        )  # fmt: skip
    control_plane.kubectl("delete", "mp", name, "-n", "default")


APPROVAL: dict[str, Any] = {
    **VALID,
    "approval": {"required": True, "groups": ["release-managers", "/ml/leads", "oidc:Ops Team"]},
}


def test_approval_is_accepted_as_written_and_defaults_to_not_required(
    control_plane: ControlPlane, crds: None
) -> None:
    spec = apply_json(control_plane, "approval", APPROVAL)["spec"]
    control_plane.kubectl("delete", "mp", "approval", "-n", "default")
    # Group names as the API server has them: OIDC paths and prefixes, spaces.
    assert spec["approval"] == APPROVAL["approval"]
    spec = apply_json(control_plane, "approval-default", {**VALID, "approval": {}})["spec"]
    control_plane.kubectl("delete", "mp", "approval-default", "-n", "default")
    assert spec["approval"] == {"required": False}
    spec = apply_json(control_plane, "no-approval", VALID)["spec"]
    control_plane.kubectl("delete", "mp", "no-approval", "-n", "default")
    assert "approval" not in spec


def test_kubectl_explain_teaches_how_to_approve(control_plane: ControlPlane, crds: None) -> None:
    text = " ".join(explain(control_plane, "modelpromotion.spec.approval").split())
    assert "kubectl promotion approve NAME" in text
    assert "kubectl annotate mp NAME deploy.mlops.dev/approve=<your user name>" in text
    assert "ValidatingAdmissionPolicy" in text and "manifests/policies/" in text
    assert "AwaitingApproval" in text
    groups = " ".join(explain(control_plane, "modelpromotion.spec.approval.groups").split())
    assert f"at most {MAX_APPROVAL_GROUPS}" in groups and f"1 to {MAX_GROUP} characters" in groups
    phase = " ".join(explain(control_plane, "modelpromotion.status.phase").split())
    assert "AwaitingApproval" in phase and "Aborted" in phase


def test_the_history_bound_is_the_cores() -> None:
    # The operator keeps HISTORY_LENGTH runs; a CRD bound below it would refuse its writes.
    crd = yaml.safe_load(CRD.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["history"]["maxItems"] == HISTORY_LENGTH


_AT = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)


def _at(seconds: int) -> datetime.datetime:
    return _AT + datetime.timedelta(seconds=seconds)


def _full_run() -> Run:
    """A run with every field the core writes set: approved, a retry, a full history."""
    entry = HistoryEntry(
        generation=2,
        retry=0,
        outcome="Succeeded",
        reason="Succeeded",
        started_at=_at(0),
        finished_at=_at(120),
        source="staging/iris",
        target="production/iris",
        source_generation=6,
        target_generation=12,
        images=("seldonio/sklearn-iris:1.4",),
        model_uris=("gs://models/iris/v1",),
        approved_by="alice",
    )
    bare = HistoryEntry(3, 0, "Aborted", "Aborted", _at(200), _at(210))
    return Run(
        generation=3,
        phase=Phase.PROMOTING,
        started_at=_at(300),
        phase_since=_at(330),
        source="staging/iris",
        target="production/iris",
        attempts=4,
        plan=PlannedChange(
            ActionKind.UPDATE,
            "5f1c0e9a2b7d",
            ("seldonio/sklearn-iris:1.5",),
            ("gs://models/iris/v2",),
            ("update production/iris",),
            7,
        ),
        previous=PreviousTarget(True, "0a9b8c7d6e5f", {"spec": {"predictors": []}}),
        retry=1,
        approved_by="alice",
        approved_at=_at(330),
        last_retry="2026-03-01T10:04:59Z",
        history=(bare, *[entry] * (HISTORY_LENGTH - 1)),
        conditions=(
            {
                "type": "Ready",
                "status": "False",
                "reason": "Promoting",
                "message": "approved by alice",
                "observedGeneration": 3,
                "lastTransitionTime": "2026-03-01T10:00:00Z",
            },
        ),
    )


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize(
    "run",
    [
        _full_run(),
        # A run that has only started: to_status writes null for everything it lacks.
        Run(generation=1, phase=Phase.AWAITING_APPROVAL, started_at=_AT, phase_since=_AT),
    ],
    ids=["approved-retry-with-history", "awaiting-approval-with-nulls"],
)
def test_the_status_the_core_writes_is_kept(
    control_plane: ControlPlane, crds: None, run: Run
) -> None:
    """Every field ``to_status`` writes is in the CRD (nothing pruned), and every null
    it writes is allowed, whether it comes as a merge patch (as Kopf sends it) or
    within a whole status (an update)."""
    name = f"core-status-{run.generation}"
    apply_json(control_plane, name, APPROVAL)
    status = to_status(run)
    control_plane.kubectl(
        "patch", "mp", name, "-n", "default", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    got = json.loads(control_plane.kubectl("get", "mp", name, "-n", "default", "-o", "json").stdout)
    assert got["status"] == _without_nulls(status)
    got["status"] = status
    replaced = control_plane.kubectl(
        "replace", "--subresource=status", "-f", "-", "-o", "json",
        input_text=json.dumps(got), check=False,
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert _without_nulls(json.loads(replaced.stdout)["status"]) == _without_nulls(status)
    wide = control_plane.kubectl("get", "mp", name, "-n", "default", "-o", "wide").stdout
    control_plane.kubectl("delete", "mp", name, "-n", "default")
    header, row = wide.splitlines()
    # A wide column: `kubectl get mp -o wide` shows who approved.
    cell = row[header.index("APPROVED") : header.index("AGE")]
    assert cell.strip() == (run.approved_by or ""), wide


def test_a_history_longer_than_the_cores_is_refused(
    control_plane: ControlPlane, crds: None
) -> None:
    name = "long-history"
    apply_json(control_plane, name, VALID)
    entry = to_status(_full_run())["history"][1]
    refused = control_plane.kubectl(
        "patch", "mp", name, "-n", "default", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"history": [entry] * (HISTORY_LENGTH + 1)}}),
        check=False,
    )  # fmt: skip
    control_plane.kubectl("delete", "mp", name, "-n", "default")
    assert refused.returncode != 0
    assert f"status.history: Too many: {HISTORY_LENGTH + 1}" in refused.stderr, refused.stderr


def _largest_canary_spec() -> dict[str, Any]:
    """The biggest Canary spec the CRD allows, in the characters whose JSON copies are
    longest: an emoji in the free texts (12 bytes in Kopf's copy), '"' in the queries."""
    spec = largest_spec(
        source={"namespace": "s" * 63, "name": "s" * MAX_NAME, "instance": "i" * 63},
        target={"namespace": "t" * 63, "name": "t" * MAX_NAME, "instance": "j" * 63},
        text="\U0001f600",
    )
    names = [f"{i}" + "t" * 62 for i in range(MAX_TEMPLATES)]
    # Queries of MAX_QUERIES characters together, the first at its own maximum.
    rest = MAX_TEMPLATES - 2
    queries = [MAX_QUERY, MAX_QUERIES - MAX_QUERY - rest] + [1] * rest
    spec["approval"] = {
        "required": True,
        # ASCII only: every character is one byte in both copies.
        "groups": [f"{i:02d}" + "g" * (MAX_GROUP - 2) for i in range(MAX_APPROVAL_GROUPS)],
    }
    spec["strategy"] = "Canary"
    spec["canary"] = {
        "steps": [{"setWeight": 99}]
        + [{"analysis": {"templates": names[:MAX_STEP_TEMPLATES]}}] * (MAX_STEPS - 1)
    }
    spec["analysis"] = {
        "templates": [
            {
                "name": name,
                "query": '"' * size,
                "min": -1.7976931348623157e308,
                "max": 1.7976931348623157e308,
                "interval": "1s".rjust(MAX_DURATION_CHARS, "0"),
                "count": 100,
                "failureLimit": 99,
            }
            for name, size in zip(names, queries, strict=True)
        ]
    }
    # The bake at its bounds: every label a matchLabels may name, at its longest.
    spec["bake"] = {
        "duration": "1s".rjust(MAX_DURATION_CHARS, "0"),
        "templates": names[:MAX_BAKE_TEMPLATES],
        "alerts": {
            "matchLabels": {
                f"l{i}" + "l" * (MAX_LABEL_NAME - 2): "v" * MAX_MATCH_VALUE
                for i in range(MAX_MATCH_LABELS)
            }
        },
    }
    return spec


def test_the_largest_canary_spec_fits_both_copies_in_annotations(
    control_plane: ControlPlane, crds: None
) -> None:
    name = "c" * MAX_NAME
    body = apply_json(control_plane, name, _largest_canary_spec())
    control_plane.kubectl("delete", "mp", name, "-n", "default")
    kubectl_copy = body["metadata"]["annotations"][KUBECTL_COPY]
    # Kopf keeps the spec (with its defaults) as Python's json writes it, plus "\n".
    kopf_copy = json.dumps({"spec": body["spec"]}, separators=(",", ":")) + "\n"
    used = sum(
        len(key.encode()) + len(value.encode())
        for key, value in ((KUBECTL_COPY, kubectl_copy), (KOPF_COPY, kopf_copy))
    )
    # Room is left for Kopf's progress, Argo CD's tracking and a person's annotations.
    assert used < 0.9 * MAX_ANNOTATIONS_BYTES, f"{used} bytes of {MAX_ANNOTATIONS_BYTES}"


ARGOCD_CASES = Path(__file__).resolve().parents[1] / "unit" / "argocd_cases"
# Samples of what the operator never writes, for the health check's defensive paths:
# no status yet, conditions without required fields, a phase from the future.
NOT_THE_OPERATORS = {
    "health_test.yaml",
    "fresh.yaml",
    "failed-no-message.yaml",
    "succeeded-no-ready.yaml",
    "unknown-phase.yaml",
}


@pytest.mark.parametrize(
    "sample",
    sorted(p.name for p in ARGOCD_CASES.glob("*.yaml") if p.name not in NOT_THE_OPERATORS),
)
def test_the_argocd_health_samples_are_what_the_crd_keeps(
    control_plane: ControlPlane, crds: None, sample: str
) -> None:
    # The health check's cases are written as the operator writes status: the CRD
    # accepts each sample's spec and status and prunes nothing from them.
    body = yaml.safe_load((ARGOCD_CASES / sample).read_text())
    name = f"sample-{sample.removesuffix('.yaml')}"
    apply_json(control_plane, name, body["spec"])
    control_plane.kubectl(
        "patch", "mp", name, "-n", "default", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": body["status"]}),
    )  # fmt: skip
    got = json.loads(control_plane.kubectl("get", "mp", name, "-n", "default", "-o", "json").stdout)
    control_plane.kubectl("delete", "mp", name, "-n", "default")
    assert got.get("status", {}) == body["status"]
