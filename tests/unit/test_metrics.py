"""The operator's metrics move by the right amount for each call the runner makes.

Every test has its own ``Metrics`` (and so its own registry); values are read
the way Prometheus scrapes them, by sample name and labels.
"""

from __future__ import annotations

import datetime

import pytest

from promotion_operator.control.metrics import Metrics
from promotion_operator.core.kinds import KINDS
from promotion_operator.core.spec import Kind
from promotion_operator.errors import AuthenticationFailed, IdentityProviderUnavailable

# The path label of a SeldonDeployment read: the template, never the actual name.
SDEP = KINDS[Kind.SELDON_DEPLOYMENT].item_path

UID = "0d5c6a1e-uid-1"
OTHER_UID = "7f3b9c2d-uid-2"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def sample(metrics: Metrics, metric: str, /, **labels: str) -> float | None:
    """The sample's value, or None when that label set was never touched."""
    return metrics.registry.get_sample_value(metric, labels)


def in_flight(metrics: Metrics) -> float | None:
    return sample(metrics, "modelpromotion_runs_in_flight")


def test_nothing_is_in_flight_at_start(metrics: Metrics) -> None:
    assert in_flight(metrics) == 0


def test_run_started_counts_one_run(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")

    assert sample(metrics, "modelpromotion_runs_started_total") == 1


def test_run_started_puts_the_run_in_flight(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")

    assert in_flight(metrics) == 1


def test_runs_of_different_resources_are_in_flight_together(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")
    metrics.run_started(OTHER_UID, "1")

    assert in_flight(metrics) == 2


def test_run_seen_in_flight_rebuilds_the_gauge(metrics: Metrics) -> None:
    # After a restart the first pass sees a run that started before it.
    metrics.run_seen(UID, in_flight=True)

    assert in_flight(metrics) == 1


def test_run_seen_again_keeps_the_run_in_flight_once(metrics: Metrics) -> None:
    metrics.run_seen(UID, in_flight=True)
    metrics.run_seen(UID, in_flight=True)

    assert in_flight(metrics) == 1


def test_run_seen_not_in_flight_takes_the_run_out(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")

    metrics.run_seen(UID, in_flight=False)

    assert in_flight(metrics) == 0


def test_run_finished_counts_one_by_outcome_and_reason(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")

    metrics.run_finished(UID, "1", "RolledBack", "VerificationTimedOut", 42.0)

    assert (
        sample(
            metrics,
            "modelpromotion_runs_finished_total",
            outcome="RolledBack",
            reason="VerificationTimedOut",
        )
        == 1
    )
    assert (
        sample(
            metrics, "modelpromotion_runs_finished_total", outcome="Succeeded", reason="Succeeded"
        )
        is None
    )


def test_run_finished_observes_the_duration_under_its_outcome(metrics: Metrics) -> None:
    metrics.run_finished(UID, "1", "Succeeded", "Succeeded", 7.5)

    name = "modelpromotion_run_duration_seconds"
    assert sample(metrics, f"{name}_count", outcome="Succeeded") == 1
    assert sample(metrics, f"{name}_sum", outcome="Succeeded") == 7.5
    assert sample(metrics, f"{name}_bucket", outcome="Succeeded", le="5.0") == 0
    assert sample(metrics, f"{name}_bucket", outcome="Succeeded", le="10.0") == 1


def test_run_finished_takes_the_run_out_of_flight(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")
    metrics.run_started(OTHER_UID, "1")

    metrics.run_finished(UID, "1", "Succeeded", "Succeeded", 3.0)

    assert in_flight(metrics) == 1


def test_forget_takes_a_deleted_run_out_of_flight(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")

    metrics.forget(UID)

    assert in_flight(metrics) == 0


def test_forget_of_a_resource_without_a_run_in_flight_changes_nothing(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")

    metrics.forget(OTHER_UID)

    assert in_flight(metrics) == 1


def test_seldon_observer_counts_a_call_by_instance_method_path_and_code(metrics: Metrics) -> None:
    observe = metrics.seldon_observer("prod")

    observe("GET", SDEP, 200, 0.25)

    assert (
        sample(
            metrics,
            "seldon_deploy_requests_total",
            instance="prod",
            method="GET",
            path=SDEP,
            code="200",
        )
        == 1
    )


def test_seldon_observer_counts_a_call_without_an_answer_as_connection_error(
    metrics: Metrics,
) -> None:
    observe = metrics.seldon_observer("prod")

    observe("PUT", SDEP, None, 10.0)

    assert (
        sample(
            metrics,
            "seldon_deploy_requests_total",
            instance="prod",
            method="PUT",
            path=SDEP,
            code="connection-error",
        )
        == 1
    )


def test_seldon_observer_observes_the_latency(metrics: Metrics) -> None:
    observe = metrics.seldon_observer("prod")

    observe("GET", SDEP, 200, 0.25)
    observe("GET", SDEP, 503, 0.5)

    labels = {"instance": "prod", "method": "GET", "path": SDEP}
    assert sample(metrics, "seldon_deploy_request_duration_seconds_count", **labels) == 2
    assert sample(metrics, "seldon_deploy_request_duration_seconds_sum", **labels) == 0.75


def test_seldon_observers_of_two_instances_count_apart(metrics: Metrics) -> None:
    metrics.seldon_observer("staging")("GET", SDEP, 200, 0.1)

    metrics.seldon_observer("prod")("GET", SDEP, 200, 0.1)

    for instance in ("staging", "prod"):
        assert (
            sample(
                metrics,
                "seldon_deploy_requests_total",
                instance=instance,
                method="GET",
                path=SDEP,
                code="200",
            )
            == 1
        )


def test_token_requested_counts_a_success(metrics: Metrics) -> None:
    metrics.token_requested("prod", None)

    assert sample(metrics, "oidc_token_requests_total", instance="prod", result="success") == 1
    assert sample(metrics, "oidc_token_requests_total", instance="prod", result="failure") is None


def test_token_requested_counts_a_failure(metrics: Metrics) -> None:
    metrics.token_requested("prod", IdentityProviderUnavailable("token endpoint answered 503"))

    assert sample(metrics, "oidc_token_requests_total", instance="prod", result="failure") == 1
    assert sample(metrics, "oidc_token_requests_total", instance="prod", result="success") is None


def test_token_requested_counts_a_failure_by_its_reason(metrics: Metrics) -> None:
    metrics.token_requested("prod", AuthenticationFailed("invalid_grant"))
    metrics.token_requested("prod", AuthenticationFailed("invalid_grant"))

    assert (
        sample(
            metrics,
            "oidc_token_request_failures_total",
            instance="prod",
            reason="AuthenticationFailed",
        )
        == 2
    )


def test_a_successful_token_request_counts_no_failure(metrics: Metrics) -> None:
    metrics.token_requested("prod", None)

    assert (
        sample(
            metrics,
            "oidc_token_request_failures_total",
            instance="prod",
            reason="AuthenticationFailed",
        )
        is None
    )


def test_two_metrics_count_in_their_own_registries(metrics: Metrics) -> None:
    other = Metrics()

    other.token_requested("prod", None)

    assert sample(metrics, "oidc_token_requests_total", instance="prod", result="success") is None


def test_a_replayed_start_of_the_same_generation_counts_once(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")
    metrics.run_started(UID, "1")

    assert sample(metrics, "modelpromotion_runs_started_total") == 1.0


def test_a_new_generation_counts_as_a_new_run(metrics: Metrics) -> None:
    metrics.run_started(UID, "1")
    metrics.run_started(UID, "2")

    assert sample(metrics, "modelpromotion_runs_started_total") == 2.0


def test_a_replayed_end_of_the_same_run_counts_once(metrics: Metrics) -> None:
    metrics.run_finished(UID, "1", "Succeeded", "Succeeded", 3.0)
    metrics.run_finished(UID, "1", "Succeeded", "Succeeded", 3.0)

    total = sample(
        metrics, "modelpromotion_runs_finished_total", outcome="Succeeded", reason="Succeeded"
    )
    assert total == 1.0


def test_analysis_measurements_are_counted_by_template_and_result(metrics: Metrics) -> None:
    metrics.measured("error-rate", "Failed")
    metrics.measured("error-rate", "Failed")
    metrics.measured("latency", "Passed")

    assert (
        sample(
            metrics,
            "modelpromotion_analysis_measurements_total",
            template="error-rate",
            result="Failed",
        )
        == 2.0
    )
    assert (
        sample(
            metrics,
            "modelpromotion_analysis_measurements_total",
            template="latency",
            result="Passed",
        )
        == 1.0
    )


def test_the_canary_weight_is_a_gauge_per_promotion(metrics: Metrics) -> None:
    metrics.canary_at(UID, "ml", "iris", 10)
    metrics.canary_at(UID, "ml", "iris", 50)

    assert sample(metrics, "modelpromotion_canary_weight", namespace="ml", name="iris") == 50.0


def test_forgetting_a_promotion_drops_its_canary_weight(metrics: Metrics) -> None:
    metrics.canary_at(UID, "ml", "iris", 10)

    metrics.forget(UID)

    assert sample(metrics, "modelpromotion_canary_weight", namespace="ml", name="iris") is None


DEADLINE = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
LEASE = "operators/seldon-promotion-operator"


def deadline_of(metrics: Metrics, name: str = "iris") -> float | None:
    return sample(
        metrics, "modelpromotion_run_deadline_timestamp_seconds", namespace="prod", name=name
    )


def test_an_open_run_shows_its_phase_deadline_as_unix_time(metrics: Metrics) -> None:
    metrics.due_by(UID, "prod", "iris", DEADLINE)

    assert deadline_of(metrics) == DEADLINE.timestamp()


def test_a_run_without_a_deadline_now_drops_its_series(metrics: Metrics) -> None:
    metrics.due_by(UID, "prod", "iris", DEADLINE)
    metrics.due_by(UID, "prod", "iris", None)

    assert deadline_of(metrics) is None


def test_forgetting_a_promotion_drops_its_deadline(metrics: Metrics) -> None:
    metrics.due_by(UID, "prod", "iris", DEADLINE)
    metrics.forget(UID)

    assert deadline_of(metrics) is None


def test_a_replica_that_leads_says_so_by_lease(metrics: Metrics) -> None:
    metrics.leading(LEASE, True)

    assert sample(metrics, "modelpromotion_leader", lease=LEASE) == 1


def test_a_replica_that_lost_the_lease_says_so(metrics: Metrics) -> None:
    metrics.leading(LEASE, True)
    metrics.leading(LEASE, False)

    assert sample(metrics, "modelpromotion_leader", lease=LEASE) == 0


def test_a_replica_that_lost_the_lease_drops_its_runs_deadlines(metrics: Metrics) -> None:
    metrics.leading(LEASE, True)
    metrics.due_by(UID, "prod", "iris", DEADLINE)
    metrics.due_by(OTHER_UID, "prod", "wine", DEADLINE)
    metrics.leading(LEASE, False)

    assert (deadline_of(metrics, "iris"), deadline_of(metrics, "wine")) == (None, None)


def test_the_work_queue_observer_sets_depth_and_working(metrics: Metrics) -> None:
    metrics.workqueue.sized(waiting=5, working=2)

    assert (
        sample(metrics, "modelpromotion_workqueue_depth"),
        sample(metrics, "modelpromotion_workqueue_working"),
    ) == (5, 2)


def test_the_work_queue_observer_observes_how_late_passes_start(metrics: Metrics) -> None:
    metrics.workqueue.taken(0.3)

    assert sample(metrics, "modelpromotion_workqueue_latency_seconds_sum") == 0.3
    assert sample(metrics, "modelpromotion_workqueue_latency_seconds_bucket", le="0.25") == 0
    assert sample(metrics, "modelpromotion_workqueue_latency_seconds_bucket", le="0.5") == 1
