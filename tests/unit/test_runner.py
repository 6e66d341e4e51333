"""The imperative shell: ``run_pass`` with a fake runtime (no HTTP)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from promotion_operator.clients.notifications import Notice, Notifier
from promotion_operator.control.runner import (
    PROMOTE_ACTION,
    ROLLBACK_ACTION,
    ChainReads,
    Runtime,
    SeldonEffects,
    run_pass,
)
from promotion_operator.core.pass_io import Action, Alerts, PassResult
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import ActionKind, Experiment, Phase, to_status
from promotion_operator.errors import Forbidden, MetricsUnavailable, NotLeading
from tests.unit.core_builders import (
    PROMOTION,
    SPEC,
    SPEC_DICT,
    T0,
    at,
    rolling_back_run,
    source_deployment,
)
from tests.unit.fake_runtime import FakeClient, FakeRuntime


def one_pass(runtime: Runtime, status: Mapping[str, Any], seconds: float = 0.0) -> PassResult:
    return run_pass(runtime, PROMOTION, SPEC_DICT, status, now=at(seconds), jitter=0.5)


def sample(runtime: Runtime, name: str, **labels: str) -> float | None:
    return runtime.metrics.registry.get_sample_value(name, labels)


# --- run_pass ----------------------------------------------------------------------------


def test_a_pass_reads_through_the_runtime_and_validates(
    runtime: FakeRuntime, fake: FakeClient
) -> None:
    result = one_pass(runtime, {})

    assert fake.calls == [
        ("find", "staging", "iris"),
        ("find", "production", "iris"),
        ("validate", "production"),
    ]
    assert result.run is not None and result.run.phase == Phase.PROMOTING


def test_writes_are_commits_named_promote(runtime: FakeRuntime, fake: FakeClient) -> None:
    validated = one_pass(runtime, {})
    assert validated.status is not None

    one_pass(runtime, validated.status, 1)

    assert fake.calls[-1] == ("create", "production", PROMOTE_ACTION)


def test_a_rollback_delete_is_a_commit_named_rollback(
    runtime: FakeRuntime, fake: FakeClient
) -> None:
    written = one_pass(runtime, {})
    assert written.status is not None
    created = one_pass(runtime, written.status, 1)
    assert created.status is not None
    fake.calls.clear()

    one_pass(runtime, to_status(rolling_back_run(None, applied_at=at(1))), 2)

    assert fake.calls[-1] == ("delete", "production", "iris", ROLLBACK_ACTION)


def test_a_typed_error_becomes_the_reason(runtime: FakeRuntime, fake: FakeClient) -> None:
    fake.error = Forbidden("GET production/iris: HTTP 403", http_status=403)

    result = one_pass(runtime, {})

    assert result.run is not None and result.run.phase == Phase.FAILED
    assert result.run.outcome is not None
    assert (result.run.outcome.reason, result.run.outcome.http_status) == ("Forbidden", 403)


def test_an_unexpected_exception_is_an_internal_error_with_its_traceback_only_in_the_log(
    runtime: FakeRuntime, fake: FakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.error = KeyError("surprise")

    with caplog.at_level(logging.ERROR):
        result = one_pass(runtime, {})

    assert result.run is not None and result.run.last_error is not None
    assert result.run.last_error.reason == "InternalError"
    assert result.run.last_error.message == "unexpected KeyError in the operator; see its log"
    assert result.requeue_after is not None
    assert any(record.exc_info for record in caplog.records)


def test_every_action_kind_is_dispatched_to_its_own_call(fake: FakeClient) -> None:
    deployment = source_deployment()
    for kind in ActionKind:
        action = Action(kind, deployment, "m", weight=10, experiment=Experiment.CANARY)
        SeldonEffects._perform(fake, SPEC.target, action)

    assert [call[0] for call in fake.calls] == [
        "validate",
        "create",
        "update",
        "delete",
        "set_canary_weight",
        "create_shadow",
        "promote_canary",
        "remove_canary",
    ]


@pytest.mark.parametrize(
    ("experiment", "promote", "remove"),
    [
        (Experiment.CANARY, "promote_canary", "remove_canary"),
        (Experiment.SHADOW, "promote_shadow", "remove_shadow"),
    ],
)
def test_promote_and_remove_call_the_experiment_the_action_names(
    fake: FakeClient, experiment: Experiment, promote: str, remove: str
) -> None:
    for kind in (ActionKind.PROMOTE, ActionKind.REMOVE):
        SeldonEffects._perform(fake, SPEC.target, Action(kind, None, "m", experiment=experiment))

    assert [call[0] for call in fake.calls] == [promote, remove]


def test_a_promotion_naming_no_experiment_is_refused_not_guessed(fake: FakeClient) -> None:
    with pytest.raises(ValueError, match="names no experiment"):
        SeldonEffects._perform(fake, SPEC.target, Action(ActionKind.PROMOTE, None, "m"))

    assert fake.calls == []


def test_a_pass_replayed_before_its_status_landed_counts_one_run(runtime: FakeRuntime) -> None:
    one_pass(runtime, {})
    one_pass(runtime, {})  # the status patch of the first pass was lost

    assert sample(runtime, "modelpromotion_runs_started_total") == 1.0


def test_a_finished_run_is_counted_once_and_leaves_flight(runtime: FakeRuntime) -> None:
    finished = rolling_back_run(None, applied_at=T0)
    status = to_status(finished)
    done = one_pass(runtime, status, 2)  # the target is already gone: RolledBack
    assert done.run is not None and done.run.phase == Phase.ROLLED_BACK
    assert done.status is not None

    one_pass(runtime, status, 3)  # replayed: the status patch was lost
    one_pass(runtime, done.status, 4)  # settled

    total = sample(
        runtime, "modelpromotion_runs_finished_total", outcome="RolledBack", reason="RolledBack"
    )
    assert total == 1.0
    assert sample(runtime, "modelpromotion_runs_in_flight") == 0.0


def test_an_unreadable_status_is_not_counted(runtime: FakeRuntime) -> None:
    result = one_pass(runtime, {**to_status(rolling_back_run(None)), "startedAt": "never"})

    assert result.run is None
    assert sample(runtime, "modelpromotion_runs_started_total") == 0.0


def deadline_of(runtime: Runtime) -> float | None:
    labels = {"namespace": PROMOTION.namespace, "name": PROMOTION.name}
    return runtime.metrics.registry.get_sample_value(
        "modelpromotion_run_deadline_timestamp_seconds", labels
    )


def test_a_pass_of_an_open_run_shows_its_phase_deadline(runtime: FakeRuntime) -> None:
    result = one_pass(runtime, {}, 5)

    assert result.run is not None and result.run.phase == Phase.PROMOTING
    # Promoting a Replace: verification.timeout from the run's start.
    assert deadline_of(runtime) == at(5).timestamp() + SPEC.timeout_seconds


def test_a_pass_that_ends_the_run_drops_its_deadline(runtime: FakeRuntime) -> None:
    one_pass(runtime, {}, 0)
    done = one_pass(runtime, to_status(rolling_back_run(None, applied_at=T0)), 2)

    assert done.run is not None and done.run.phase == Phase.ROLLED_BACK
    assert deadline_of(runtime) is None


# --- notifications ------------------------------------------------------------------------------


class RecordingNotifier(Notifier):
    """A notifier without sinks that remembers what it was asked to send."""

    def __init__(self) -> None:
        super().__init__(())
        self.sent: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.sent.append(notice)


@pytest.fixture
def notices(runtime: FakeRuntime) -> list[Notice]:
    recording = RecordingNotifier()
    runtime.notifier = recording
    return recording.sent


def test_a_started_run_is_notified_once_even_when_the_pass_is_replayed(
    runtime: FakeRuntime, notices: list[Notice]
) -> None:
    one_pass(runtime, {})
    one_pass(runtime, {})  # the first pass's status patch was lost

    assert [n.kind for n in notices] == ["RunStarted"]
    assert (notices[0].source, notices[0].target) == ("staging/iris", "production/iris")


def test_a_path_runs_notice_names_its_path_and_stage(
    runtime: FakeRuntime, notices: list[Notice]
) -> None:
    labels = {"deploy.mlops.dev/path": "iris", "deploy.mlops.dev/stage": "staging"}
    run_pass(runtime, PROMOTION, SPEC_DICT, {}, now=at(0), jitter=0.5, labels=labels)

    assert [(n.path, n.stage) for n in notices] == [("iris", "staging")]


def test_a_pass_that_outlived_the_lease_notifies_and_counts_nothing(
    runtime: FakeRuntime, notices: list[Notice]
) -> None:
    runtime.fence = lambda: 0.0  # the Lease lapsed while the pass ran

    with pytest.raises(NotLeading):
        one_pass(runtime, {})

    assert notices == []
    assert sample(runtime, "modelpromotion_runs_started_total") == 0.0


def test_an_outcome_is_notified_with_its_reason(
    runtime: FakeRuntime, notices: list[Notice]
) -> None:
    one_pass(runtime, to_status(rolling_back_run(None, applied_at=T0)), 2)

    (notice,) = notices
    assert (notice.kind, notice.phase, notice.reason) == ("RolledBack", "RolledBack", "RolledBack")
    assert "rolled back production/iris" in notice.message


def test_waiting_for_approval_is_notified(runtime: FakeRuntime, notices: list[Notice]) -> None:
    spec = {**SPEC_DICT, "approval": {"required": True}}
    first = run_pass(runtime, PROMOTION, spec, {}, now=at(0), jitter=0.5)
    assert first.status is not None

    run_pass(runtime, PROMOTION, spec, first.status, now=at(1), jitter=0.5)

    assert [n.kind for n in notices] == ["RunStarted", "AwaitingApproval"]


def test_a_retry_counts_as_a_run_of_its_own(runtime: FakeRuntime) -> None:
    one_pass(runtime, {})  # generation 2 starts
    failed = to_status(rolling_back_run(None, applied_at=T0))
    done = one_pass(runtime, failed, 2)  # ... and ends
    assert done.status is not None

    run_pass(
        runtime,
        PROMOTION,
        SPEC_DICT,
        done.status,
        now=at(3),
        jitter=0.5,
        requests=Requests(retry="token"),
    )

    assert sample(runtime, "modelpromotion_runs_started_total") == 2.0


# --- reads ----------------------------------------------------------------------------------


def finds(fake: FakeClient) -> list[tuple[str, ...]]:
    return [call for call in fake.calls if call[0] == "find"]


def chained_pass(
    runtime: Runtime, status: Mapping[str, Any], chain: ChainReads, seconds: float
) -> PassResult:
    return run_pass(runtime, PROMOTION, SPEC_DICT, status, now=at(seconds), jitter=0.5, chain=chain)


def test_a_pass_that_follows_at_once_reuses_what_the_one_before_read(
    runtime: FakeRuntime, fake: FakeClient
) -> None:
    chain = ChainReads()
    validated = chained_pass(runtime, {}, chain, 0.0)
    assert validated.requeue_after == 0.0 and validated.status is not None
    read_before = finds(fake)

    written = chained_pass(runtime, validated.status, chain, 0.1)

    assert finds(fake) == read_before  # source and target not read again
    assert fake.calls[-1][0] == "create"
    assert written.status is not None and written.status["phase"] == "Verifying"


def test_after_a_write_the_target_is_read_again(runtime: FakeRuntime, fake: FakeClient) -> None:
    chain = ChainReads()
    validated = chained_pass(runtime, {}, chain, 0.0)
    assert validated.status is not None
    written = chained_pass(runtime, validated.status, chain, 0.1)
    assert written.status is not None
    read_before = len(finds(fake))

    chained_pass(runtime, written.status, chain, 0.2)

    assert finds(fake)[read_before:] == [("find", "production", "iris")]


# --- Prometheus: measurements and a bake's alerts -----------------------------------------------


class _Prometheus:
    """A metrics source answering every look at the alerts with ``firing``, or raising."""

    def __init__(self, firing: list[dict[str, str]], error: Exception | None = None) -> None:
        self.firing, self.error = firing, error
        self.asked: list[dict[str, str]] = []

    def query(self, promql: str) -> float:
        return 0.0

    def query_by(self, promql: str, label: str) -> dict[str, float]:
        return {}

    def firing_alerts(self, match_labels: Mapping[str, str]) -> list[dict[str, str]]:
        self.asked.append(dict(match_labels))
        if self.error is not None:
            raise self.error
        return self.firing


def test_a_look_at_the_alerts_asks_prometheus_for_the_labels(
    runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert = {"alertname": "PredictorErrorRateHigh", "namespace": "production"}
    prometheus = _Prometheus([alert])
    monkeypatch.setattr(runtime, "prometheus", lambda: prometheus)

    alerts = SeldonEffects(runtime, SPEC).firing_alerts({"namespace": "production"})

    assert alerts == Alerts((alert,))
    assert prometheus.asked == [{"namespace": "production"}]


def test_prometheus_failing_a_look_at_the_alerts_is_its_reason(
    runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus = _Prometheus([], MetricsUnavailable("query on Prometheus: connection refused"))
    monkeypatch.setattr(runtime, "prometheus", lambda: prometheus)

    alerts = SeldonEffects(runtime, SPEC).firing_alerts({"namespace": "production"})

    assert alerts.failure is not None
    assert (alerts.failure.reason, alerts.failure.retryable) == ("MetricsUnavailable", True)


def test_without_prometheus_measurements_and_alerts_fail_as_invalid_settings(
    runtime: FakeRuntime,
) -> None:
    effects = SeldonEffects(runtime, SPEC)

    for failure in (effects.query("up").failure, effects.firing_alerts({"a": "b"}).failure):
        assert failure is not None
        assert (failure.reason, failure.retryable) == ("InvalidSettings", False)
        assert "PROMETHEUS_URL" in failure.message
