"""``kubectl promotion``: formatting, arguments, exit codes and what each request
writes, as pure functions (no API server; see tests/e2e/test_kubectl_plugin.py)."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from promotion_operator.kubectl_plugin import cli, render
from promotion_operator.kubectl_plugin.kube import api_error, load
from promotion_operator.kubectl_plugin.resource import (
    ABORT_ANNOTATION,
    APPROVE_ANNOTATION,
    AWAITING_APPROVAL,
    BAKING,
    FINISHED_PHASES,
    PAUSED,
    RESUME_ANNOTATION,
    RETRY_ANNOTATION,
    ExitCode,
    Promotion,
    RetryWait,
    decide_abort,
    decide_approve,
    decide_resume,
    decide_retry,
    exit_code_for,
    run_outcome,
    still_removing,
)

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


def promotion(
    phase: str | None = "Succeeded",
    *,
    generation: int = 2,
    observed: int | None = 2,
    retry: int = 0,
    last_retry: str | None = None,
    annotations: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    **status: Any,
) -> Promotion:
    """A ModelPromotion as the API would serve it."""
    body: dict[str, Any] = {
        "apiVersion": "deploy.mlops.dev/v1alpha1",
        "kind": "ModelPromotion",
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "generation": generation,
            "resourceVersion": "42",
            "creationTimestamp": "2026-03-01T11:00:00Z",
            "annotations": annotations or {},
        },
        "spec": spec
        or {"source": {"namespace": "staging", "name": "iris"}, "target": {"namespace": "prod"}},
    }
    if observed is not None:
        body["status"] = {
            "phase": phase,
            "observedGeneration": observed,
            "retry": retry,
            "lastRetry": last_retry,
            **status,
        }
    return Promotion(body)


def ready(reason: str, message: str = "", status: str = "False") -> list[dict[str, str]]:
    return [{"type": "Ready", "status": status, "reason": reason, "message": message}]


# --- exit codes and the end of a run ----------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "reason", "code"),
    [
        ("Succeeded", "", ExitCode.SUCCEEDED),
        ("Failed", "TargetFailed", ExitCode.FAILED),
        ("RolledBack", "VerificationTimedOut", ExitCode.ROLLED_BACK),
        ("Aborted", "Aborted", ExitCode.ABORTED),
        # An abort after the write rolls back (or fails to): still an abort.
        ("RolledBack", "Aborted", ExitCode.ABORTED),
        ("Failed", "Aborted", ExitCode.ABORTED),
        ("Verifying", "", None),
        ("Suspended", "", None),
        ("AwaitingApproval", "", None),
        ("", "", None),
    ],
)
def test_exit_code_for_each_phase(phase: str, reason: str, code: ExitCode | None) -> None:
    assert exit_code_for(phase, reason) == code


def test_exit_codes_are_the_documented_numbers() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 7]
    for code in ExitCode:
        assert f"  {int(code)}  " in cli.EXIT_CODES


def test_a_dry_run_that_succeeded_exits_zero() -> None:
    p = promotion("Succeeded", conditions=ready("DryRun", status="True"))
    assert run_outcome(p) == ExitCode.SUCCEEDED


def test_the_run_of_an_earlier_generation_has_not_finished() -> None:
    assert run_outcome(promotion("Failed", generation=3, observed=2)) is None
    assert run_outcome(promotion("Failed", generation=3, observed=None)) is None
    assert run_outcome(promotion("Failed", generation=3, observed=3)) == ExitCode.FAILED


def test_a_pending_retry_means_the_final_phase_is_the_previous_runs() -> None:
    pending = promotion("Failed", last_retry="a", annotations={RETRY_ANNOTATION: "b"})
    handled = promotion("Failed", last_retry="b", annotations={RETRY_ANNOTATION: "b"})
    assert run_outcome(pending) is None
    assert run_outcome(handled) == ExitCode.FAILED


def test_a_requested_retry_waits_for_its_token_and_a_new_run() -> None:
    asked = RetryWait("t2", run_before=(2, 0), finished_before=True)
    # Right after the request: the old run's Failed must not end the watch...
    assert run_outcome(promotion("Failed", retry=0, last_retry="t1"), asked) is None
    # ...even if the annotation is not visible (another writer removed or replaced it).
    assert run_outcome(promotion("Failed", retry=0, last_retry="t1"), asked) is None
    # The token handled but the same run (cannot happen with this operator): still wait.
    assert run_outcome(promotion("Failed", retry=0, last_retry="t2"), asked) is None
    # The new run, working, then finished.
    assert run_outcome(promotion("Promoting", retry=1, last_retry="t2"), asked) is None
    assert run_outcome(promotion("Succeeded", retry=1, last_retry="t2"), asked) == 0
    # A new generation replaced the run: its outcome counts.
    changed = promotion("RolledBack", generation=3, observed=3, retry=0, last_retry="t2")
    assert run_outcome(changed, asked) == ExitCode.ROLLED_BACK


def test_a_retry_ignored_by_a_running_run_waits_for_that_run() -> None:
    # The operator records a retry of an unfinished run as handled and carries on.
    asked = RetryWait("t2", run_before=(2, 0), finished_before=False)
    assert run_outcome(promotion("Verifying", last_retry="t2"), asked) is None
    assert run_outcome(promotion("Failed", last_retry="t2"), asked) == ExitCode.FAILED


# --- what the requests write ------------------------------------------------------------

APPROVAL = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "prod"},
    "approval": {"required": True, "groups": ["approvers"]},
}


def test_approve_writes_the_callers_name_at_the_gate() -> None:
    decision = decide_approve(promotion("AwaitingApproval", spec=APPROVAL), "alice")
    assert decision.value == "alice"
    assert decision.exit_code == ExitCode.SUCCEEDED
    assert decision.message == "approved as alice"


def test_approve_before_the_gate_writes_and_says_when_it_counts() -> None:
    decision = decide_approve(promotion("Validating", spec=APPROVAL), "alice")
    assert decision.value == "alice"
    assert "the approval counts at the gate" in decision.message


@pytest.mark.parametrize(
    ("p", "words", "code"),
    [
        (promotion("AwaitingApproval"), "does not require approval", ExitCode.SUCCEEDED),
        (
            promotion("AwaitingApproval", spec=APPROVAL, annotations={APPROVE_ANNOTATION: "alice"}),
            "already approved by you",
            ExitCode.SUCCEEDED,
        ),
        (
            promotion("AwaitingApproval", spec=APPROVAL, annotations={APPROVE_ANNOTATION: "bob"}),
            "already approved by bob",
            ExitCode.SUCCEEDED,
        ),
        (
            promotion(
                "Promoting", spec=APPROVAL, approval={"by": "bob", "at": "2026-03-01T11:00Z"}
            ),
            "already approved by bob",
            ExitCode.SUCCEEDED,
        ),
        (promotion("Failed", spec=APPROVAL), "nothing to approve: run 2.0 ended Failed", 0),
        (
            promotion("Succeeded", spec=APPROVAL, generation=3, observed=2),
            "generation 3 has not started yet",
            ExitCode.ERROR,
        ),
    ],
)
def test_approve_writes_nothing_when(p: Promotion, words: str, code: ExitCode) -> None:
    decision = decide_approve(p, "alice")
    assert decision.value is None
    assert words in decision.message
    assert decision.exit_code == code


def test_abort_writes_the_time_once() -> None:
    decision = decide_abort(promotion("Verifying"), NOW)
    assert decision.value == "2026-03-01T12:00:00Z"
    again = decide_abort(promotion("Verifying", annotations={ABORT_ANNOTATION: "x"}), NOW)
    assert again.value is None
    assert "abort already requested at x" in again.message


def test_abort_of_a_finished_run_does_nothing_and_says_so() -> None:
    decision = decide_abort(promotion("Succeeded"), NOW)
    assert (decision.value, decision.exit_code) == (None, ExitCode.SUCCEEDED)
    assert decision.message == "nothing to abort: run 2.0 ended Succeeded"


def test_abort_before_the_run_started_is_refused() -> None:
    # The operator drops requests left from before a run started: say so now.
    decision = decide_abort(promotion("Succeeded", generation=3, observed=2), NOW)
    assert (decision.value, decision.exit_code) == (None, ExitCode.ERROR)
    pending = promotion("Failed", last_retry="a", annotations={RETRY_ANNOTATION: "b"})
    assert "a retry (b) is about to start a new run" in decide_abort(pending, NOW).message


def test_retry_of_a_finished_run_writes_the_token_and_remembers_the_run() -> None:
    decision = decide_retry(promotion("Failed", retry=1, last_retry="old"), "new")
    assert decision.value == "new"
    assert decision.watch == RetryWait("new", (2, 1), True)
    assert decision.message == "retry requested (new) of run 2.1 (Failed)"


def test_retry_joins_a_pending_retry_instead_of_replacing_it() -> None:
    p = promotion("Failed", last_retry="a", annotations={RETRY_ANNOTATION: "theirs"})
    decision = decide_retry(p, "mine")
    assert decision.value is None
    assert decision.exit_code == ExitCode.SUCCEEDED
    assert decision.watch == RetryWait("theirs", (2, 0), True)


def test_retry_of_a_running_run_is_refused() -> None:
    decision = decide_retry(promotion("Verifying"), "t")
    assert (decision.value, decision.exit_code) == (None, ExitCode.ERROR)
    assert "run 2.0 is still Verifying" in decision.message


def test_retry_of_a_generation_not_run_yet_writes_nothing() -> None:
    decision = decide_retry(promotion("Succeeded", generation=3, observed=2), "t")
    assert (decision.value, decision.exit_code, decision.watch) == (None, 0, None)


def test_resume_only_a_paused_run_and_only_once() -> None:
    assert decide_resume(promotion("Paused")).value == "true"
    assert decide_resume(promotion("Analyzing")).value is None
    assert "not Paused" in decide_resume(promotion("Analyzing")).message
    again = decide_resume(promotion("Paused", annotations={RESUME_ANNOTATION: "true"}))
    assert again.value is None


def test_a_request_the_operator_is_still_removing_is_not_set_again() -> None:
    # Set again with the same value now, it would be taken for the one acted on.
    record = [{"name": "resume", "value": "true"}]
    removing = promotion("Paused", consumedRequests=record)

    refused = still_removing(removing, RESUME_ANNOTATION)

    assert refused is not None and refused.value is None
    assert refused.exit_code == ExitCode.ERROR
    assert "still removing the previous deploy.mlops.dev/resume=true" in refused.message
    assert still_removing(removing, ABORT_ANNOTATION) is None  # another request: free
    assert still_removing(promotion("Paused"), RESUME_ANNOTATION) is None
    annotated = promotion("Paused", consumedRequests=record, annotations={RESUME_ANNOTATION: "x"})
    assert still_removing(annotated, RESUME_ANNOTATION) is None  # its decision says it waits


def test_empty_request_annotations_count_as_not_set() -> None:
    p = promotion("Verifying", annotations={ABORT_ANNOTATION: " ", RETRY_ANNOTATION: ""})
    assert p.request(ABORT_ANNOTATION) is None
    assert p.pending_retry is None


def test_retry_tokens_are_unique_and_start_with_the_time() -> None:
    tokens = {cli.new_retry_token(NOW) for _ in range(50)}
    assert len(tokens) == 50
    assert all(t.startswith("2026-03-01T12:00:00Z-") for t in tokens)


def test_the_annotations_are_the_operators() -> None:
    requests = pytest.importorskip("promotion_operator.core.requests")
    assert requests.APPROVE_ANNOTATION == APPROVE_ANNOTATION
    assert requests.ABORT_ANNOTATION == ABORT_ANNOTATION
    assert requests.RETRY_ANNOTATION == RETRY_ANNOTATION
    assert requests.RESUME_ANNOTATION == RESUME_ANNOTATION


# --- formatting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 30 * 60, "3h30m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_as_kubectl(seconds: int, text: str) -> None:
    assert render.human_duration(seconds) == text


def test_table_aligns_as_kubectl() -> None:
    text = render.table(["NAME", "X", "AGE"], [["a", "", "1s"], ["longer-name", "y", "2m"]])
    assert text.splitlines() == [
        "NAME          X     AGE",
        "a                   1s",
        "longer-name   y     2m",
    ]


def test_list_table_has_kubectls_columns_and_blank_cells_before_a_status() -> None:
    fresh = promotion(observed=None)
    canary = promotion(
        "Analyzing",
        source="staging/iris",
        target="prod/iris",
        canary={"step": 2, "weight": 20},
        conditions=ready("Analyzing", "measuring"),
    )
    lines = render.list_table([canary, fresh], NOW).splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "TARGET", "PHASE", "REASON", "WEIGHT", "AGE"]
    assert lines[1].split() == [
        "iris",
        "staging/iris",
        "prod/iris",
        "Analyzing",
        "Analyzing",
        "20",
        "60m",
    ]
    # No status yet: the spec says where from and to.
    assert lines[2].split() == ["iris", "staging/iris", "prod/iris", "60m"]


def test_list_table_all_namespaces_and_wide() -> None:
    p = promotion(
        "Succeeded",
        approval={"by": "alice", "at": "x"},
        retry=1,
        conditions=ready("Succeeded", "promoted", "True"),
    )
    lines = render.list_table([p], NOW, all_namespaces=True, wide=True).splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert lines[0].endswith("STRATEGY   RUN   STEP   APPROVED BY   MESSAGE")
    assert lines[1].split() == [
        "ml", "iris", "staging/iris", "prod/iris", "Succeeded", "Succeeded", "60m",
        "Replace", "2.1", "alice", "promoted",
    ]  # fmt: skip


def test_source_and_target_from_the_spec_follow_the_defaults() -> None:
    spec = {
        "source": {"namespace": "s", "name": "a", "instance": "eu"},
        "target": {"namespace": "t"},
    }
    p = promotion(observed=None, spec=spec)
    assert (p.source, p.target) == ("eu:s/a", "eu:t/a")
    spec["target"] = {"namespace": "t", "name": "b", "instance": "us"}
    assert Promotion(p.body).target == "us:t/b"


HISTORY = [
    {"generation": 2, "retry": 0, "outcome": "Failed", "reason": "TargetFailed",
     "startedAt": "2026-03-01T10:00:00Z", "finishedAt": "2026-03-01T10:05:00Z",
     "sourceGeneration": 4, "images": ["a:1", "b:2"]},
    {"generation": 2, "retry": 1, "outcome": "Succeeded", "reason": "Succeeded",
     "startedAt": "2026-03-01T11:00:00Z", "finishedAt": "2026-03-01T11:05:00Z",
     "sourceGeneration": 4, "targetGeneration": 7, "images": ["a:1"],
     "modelUris": ["gs://m"], "approvedBy": "alice", "source": "s/a", "target": "t/a"},
    {"generation": 1, "retry": 0, "outcome": "Succeeded", "reason": "DryRun",
     "startedAt": "2026-03-01T09:00:00Z", "finishedAt": "2026-03-01T09:00:01Z"},
]  # fmt: skip


def test_history_is_newest_first_whatever_the_stored_order() -> None:
    p = promotion("Succeeded", history=HISTORY)
    assert [render.history_run(e) for e in p.history] == ["2.1", "2.0", "1.0"]


def test_history_table() -> None:
    lines = render.history_table(promotion(history=HISTORY).history).splitlines()
    assert re.split(r"\s{3,}", lines[0]) == [
        "RUN", "OUTCOME", "REASON", "STARTED", "FINISHED", "SOURCE GEN", "TARGET GEN", "IMAGES",
    ]  # fmt: skip
    assert lines[1].split() == [
        "2.1", "Succeeded", "Succeeded", "2026-03-01T11:00:00Z", "2026-03-01T11:05:00Z",
        "4", "7", "a:1",
    ]  # fmt: skip
    assert lines[2].split()[-3:] == ["4", "-", "a:1,b:2"]
    assert lines[3].split()[-3:] == ["-", "-", "-"]
    wide = render.history_table(promotion(history=HISTORY).history, wide=True).splitlines()
    assert wide[0].endswith("MODEL URIS   APPROVED BY   SOURCE   TARGET")
    assert wide[1].split()[-4:] == ["gs://m", "alice", "s/a", "t/a"]


def test_summary_shows_the_run_its_canary_its_requests_and_recent_history() -> None:
    measurements = [
        {"template": "errors", "value": 0.01 * i, "max": 0.05, "result": "Passed", "at": "x"}
        for i in range(7)
    ]
    p = promotion(
        "Paused",
        spec={**APPROVAL, "strategy": "Canary", "canary": {"steps": [{}, {}, {}]}},
        retry=1,
        annotations={ABORT_ANNOTATION: "2026-03-01T11:59:00Z"},
        approval={"by": "alice", "at": "2026-03-01T11:10:00Z"},
        startedAt="2026-03-01T11:00:00Z",
        canary={"step": 1, "weight": 10, "measurements": measurements},
        conditions=ready("Paused", "paused until resumed"),
        lastError={"reason": "SeldonDeployUnavailable", "message": "503"},
        history=HISTORY,
    )
    text = render.summary(p, NOW)
    assert "Strategy:     Canary (3 steps)" in text
    assert (
        "Approval:     required (groups: approvers); approved by alice at 2026-03-01T11:10:00Z"
        in text
    )
    assert "Run:          2.1 (generation 2, retry 1)" in text
    assert "Ready:        False Paused" in text
    assert "Message:      paused until resumed" in text
    assert "Started:      2026-03-01T11:00:00Z (60m ago)" in text
    assert "Canary:       step 1 of 3, weight 10%, paused until resumed" in text
    assert "Last error:   SeldonDeployUnavailable: 503" in text
    assert "Requests:     abort asked at 2026-03-01T11:59:00Z not handled yet" in text
    assert "Measurements (last 5 of 7, oldest first):" in text
    assert "errors     Passed   0.06    -     0.05   x" in text
    assert "History (last 3 of 3; kubectl promotion history):" in text
    assert text.index("  2.1 ") < text.index("  2.0 ") < text.index("  1.0 ")


def test_measurements_of_a_comparison_show_both_values_and_the_score() -> None:
    compared = {
        "template": "latency",
        "result": "Failed",
        "value": 0.2,
        "champion": 0.1,
        "score": 2.0,
        "max": 1.1,
        "at": "t",
    }

    lines = render.measurements_table([compared, {"template": "errors", "result": "Passed"}])

    header, first, second = lines.splitlines()
    assert header.split() == [
        "TEMPLATE",
        "RESULT",
        "CHALLENGER",
        "CHAMPION",
        "SCORE",
        "MIN",
        "MAX",
        "AT",
    ]
    assert first.split() == ["latency", "Failed", "0.2", "0.1", "2", "-", "1.1", "t"]
    assert second.split()[:3] == ["errors", "Passed", "-"]


def test_summary_shows_the_bake_and_its_measurements_after_the_canarys() -> None:
    bake = {
        "startedAt": "2026-03-01T11:50:00Z",
        "endsAt": "2026-03-01T12:00:00Z",
        "analysis": [{"template": "errors", "taken": 2}],
        "measurements": [{"template": "errors", "value": 0.02, "result": "Passed", "at": "b"}],
    }
    canary = {"step": 3, "weight": 100, "measurements": [{"template": "c", "at": "a"}]}
    p = promotion("Baking", canary=canary, bake=bake, conditions=ready("Baking", "baking"))

    text = render.summary(p, NOW)

    assert (
        "Bake:         baking until 2026-03-01T12:00:00Z (started 2026-03-01T11:50:00Z); "
        "errors 2 taken"
    ) in text
    assert [m["at"] for m in p.measurements] == ["a", "b"]
    line = render.watch_line(p, NOW)
    assert "Baking  canary step 3, weight 100%  bake until 2026-03-01T12:00:00Z: baking" in line


def test_summary_names_the_alerts_that_ended_a_bake() -> None:
    bake = {"endsAt": "2026-03-01T12:00:00Z", "alerts": [{"alertname": "ErrorsHigh"}]}
    p = promotion("RolledBack", bake=bake, conditions=ready("RolledBack"))

    assert "Bake:         until 2026-03-01T12:00:00Z; alerts fired: ErrorsHigh" in render.summary(
        p, NOW
    )
    assert "bake until" not in render.watch_line(p, NOW)


def test_summary_before_the_operator_wrote_a_status() -> None:
    text = render.summary(promotion(observed=None), NOW)
    assert "Run:          none yet (generation 2 not picked up by the operator)" in text
    assert "Phase:" not in text


def test_watch_line_and_outcome_line() -> None:
    p = promotion(
        "Analyzing",
        retry=1,
        canary={"step": 2, "weight": 30},
        conditions=ready("Retrying", "Prometheus unavailable"),
    )
    line = render.watch_line(p, NOW)
    assert line == (
        "2026-03-01T12:00:00Z  run 2.1  Analyzing (Retrying)  canary step 2, weight 30%: "
        "Prometheus unavailable"
    )
    rolled = promotion("RolledBack", outcome={"reason": "Aborted"}, conditions=ready("RolledBack"))
    assert render.outcome_line(rolled, ExitCode.ABORTED) == (
        "ml/iris: run 2.0 was aborted (RolledBack, Aborted)"
    )
    done = promotion("Succeeded", conditions=ready("DryRun", status="True"))
    assert render.outcome_line(done, ExitCode.SUCCEEDED) == (
        "ml/iris: run 2.0 succeeded (Succeeded, DryRun)"
    )


def test_change_key_ignores_the_message_but_not_the_canary() -> None:
    a = promotion("Verifying", conditions=ready("WaitingForAvailable", "1 of 3"))
    b = promotion("Verifying", conditions=ready("WaitingForAvailable", "2 of 3"))
    c = promotion("Verifying", canary={"weight": 5}, conditions=ready("WaitingForAvailable"))
    assert a.change_key() == b.change_key() != c.change_key()


def test_dump_json_and_yaml() -> None:
    body = {"b": 1, "a": [1, 2]}
    assert json.loads(render.dump(body, "json")) == body
    assert render.dump(body, "yaml") == "b: 1\na:\n- 1\n- 2"


def test_malformed_status_fields_read_as_absent() -> None:
    p = Promotion(
        {
            "metadata": {"generation": "2", "annotations": ["x"]},
            "status": {"retry": True, "canary": [], "history": {}, "conditions": "Ready"},
        }
    )
    assert (p.generation, p.retry, p.canary_weight, p.history, p.ready_reason) == (
        None, 0, None, [], ""
    )  # fmt: skip
    assert p.request(ABORT_ANNOTATION) is None
    render.summary(p, NOW)
    render.list_table([p], NOW, wide=True)


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("500ms", 0.5), ("2.5s", 2.5), ("10", 10)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert cli.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1", "1d", "5 m", "nan", "inf"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(Exception, match="invalid duration"):
        cli.parse_duration(text)


def test_kubeconfig_flags_go_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    before = parser.parse_args(["--kubeconfig", "k", "--context", "c", "-n", "ns", "watch", "x"])
    after = parser.parse_args(["watch", "x", "-n", "ns", "--context", "c", "--kubeconfig", "k"])
    for args in (before, after):
        assert (args.kubeconfig, args.context, args.namespace, args.name) == ("k", "c", "ns", "x")
        assert args.timeout == 1800
        assert args.run is cli.cmd_watch
    plain = parser.parse_args(["list"])
    assert not hasattr(plain, "namespace")
    assert not plain.all_namespaces


def test_command_options() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["retry", "x", "--watch", "--timeout", "1m"])
    assert (args.watch, args.timeout, args.run) == (True, 60, cli.cmd_retry)
    args = parser.parse_args(["list", "-A", "-o", "wide"])
    assert (args.all_namespaces, args.output) == (True, "wide")
    assert parser.parse_args(["history", "x", "-o", "yaml"]).output == "yaml"
    assert parser.parse_args(["get", "x", "-o", "json"]).output == "json"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["get"],
        ["get", "x", "-o", "wide"],
        ["watch", "x", "--timeout", "soon"],
        ["list", "--bogus"],
    ],
)
def test_usage_errors_exit_5(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == ExitCode.NOT_FOUND
    assert "usage: kubectl promotion" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["watch", "--help"])
    assert exited.value.code == 0
    assert "exit codes:" in capsys.readouterr().out


# --- kubeconfig and errors ----------------------------------------------------------------


def _kubeconfig(path: Path, server: str, namespace: str | None = None) -> Path:
    context: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "main", "context": context},
                    {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "b"}},
                ],
                "current-context": "main",
            }
        )
    )
    return path


def test_the_namespace_defaults_to_the_contexts(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", "http://127.0.0.1:1", "team-a")
    assert load(str(config), None).namespace == "team-a"
    assert load(str(config), "other").namespace == "b"
    assert load(str(_kubeconfig(tmp_path / "bare", "http://127.0.0.1:1")), None).namespace == (
        "default"
    )


def test_a_missing_kubeconfig_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["list", "--kubeconfig", str(tmp_path / "absent")])
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR
    assert err.startswith("error: invalid kubeconfig: ")
    assert err.count("\n") == 1


def test_an_unreachable_server_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.harness.ports import free_port

    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = _kubeconfig(tmp_path / "config", server)
    code = cli.main(["get", "x", "--kubeconfig", str(config)])
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR
    assert err == f"error: cannot reach the Kubernetes API server at {server}: " + (
        "[Errno 111] Connection refused\n"
    )


def _status_error(code: int, reason: str, message: str, **details: str) -> ApiException:
    body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message}
    body["code"] = code  # type: ignore[assignment]
    if details:
        body["details"] = details  # type: ignore[assignment]
    return ApiException(status=code, reason=reason, body=json.dumps(body))


def test_api_errors_are_the_servers_message_in_kubectls_words() -> None:
    missing = api_error(
        _status_error(404, "NotFound", 'modelpromotions.deploy.mlops.dev "x" not found', name="x"),
        "x",
    )
    assert (
        missing.message
        == 'Error from server (NotFound): modelpromotions.deploy.mlops.dev "x" not found'
    )
    assert missing.exit_code == ExitCode.NOT_FOUND
    no_crd = api_error(_status_error(404, "NotFound", "the server could not find it"), "x")
    assert "is the ModelPromotion CRD installed?" in no_crd.message
    forbidden = api_error(_status_error(403, "Forbidden", 'user "bob" cannot patch'), "x")
    assert forbidden.message == 'Error from server (Forbidden): user "bob" cannot patch'
    assert forbidden.exit_code == ExitCode.ERROR
    denied = api_error(
        _status_error(
            422, "Invalid", "ValidatingAdmissionPolicy 'p' denied request:\n only approvers"
        ),
        "x",
    )
    assert denied.message == (
        "Error from server (Invalid): ValidatingAdmissionPolicy 'p' denied request: only approvers"
    )
    plain = api_error(ApiException(status=500, reason="Internal Server Error", body="boom"), "x")
    assert plain.message == "Error from server (Internal Server Error): boom"


def test_a_bug_is_one_line_and_its_traceback_only_with_v(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(session: cli.Session) -> ExitCode:
        raise KeyError("boom")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == ExitCode.ERROR
    assert capsys.readouterr().err == (
        "error: internal error: KeyError: 'boom' (-v shows the traceback)\n"
    )
    assert cli.main(["list", "-v"]) == ExitCode.ERROR
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_the_phases_are_the_operators() -> None:
    run = pytest.importorskip("promotion_operator.core.run")
    assert {phase.value for phase in run.FINISHED} == FINISHED_PHASES
    assert run.Phase.AWAITING_APPROVAL.value == AWAITING_APPROVAL
    assert run.Phase.PAUSED.value == PAUSED
    assert run.Phase.BAKING.value == BAKING
