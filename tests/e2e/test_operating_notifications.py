"""Notifications (issue 10) from the operator as its own process, to real webhook
receivers on loopback (tests/harness/receiver.py): a Slack-compatible one and a
CloudEvents one, their URLs (with a token) in files laid out like a mounted Secret.

The token is registered with tests/harness/secrets.py, so the operator fixture's
teardown looks for it in the operator's output, Events and status; each test also
looks for it itself, in the metrics too."""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.harness.operating import ENDED, QUIET_SECONDS, SPEC
from tests.harness.operator_process import OperatorProcess, write_credentials
from tests.harness.promotion_paths import Paths, stage, stage_is
from tests.harness.promotions import Promotions
from tests.harness.receiver import Answer, Received, Receiver, refused_url
from tests.harness.secrets import SECRETS, assert_no_secrets
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

CE_PREFIX = "dev.mlops.deploy.modelpromotion."
CE_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TOKEN_NAME = "the webhook token"


@pytest.fixture
def webhook_token(monkeypatch: pytest.MonkeyPatch) -> str:
    """The token in the webhook URLs, registered as a secret for the operator fixture's
    scan (requested before ``operator_factory``, so still registered when it scans)."""
    value = secrets.token_urlsafe(24)
    monkeypatch.setitem(SECRETS, TOKEN_NAME, value)
    return value


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def cloudevents() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def _slack_url(base: str, token: str) -> str:
    return f"{base}/services/T0PROMO/B0PROMO/{token}"


def _start(
    operator_factory: StartOperator, tmp_path: Path, *, slack_url: str, cloudevents_url: str
) -> OperatorProcess:
    """An operator notifying both sinks; their URLs in a directory laid out like a
    mounted Secret (as the credentials are), readable by the operator's user."""
    hooks = write_credentials(
        tmp_path / "webhooks", {"slack-url": slack_url, "cloudevents-url": cloudevents_url}
    )
    return operator_factory(
        extra_env={
            "NOTIFY_SLACK_URL_FILE": str(hooks / "slack-url"),
            "NOTIFY_CLOUDEVENTS_URL_FILE": str(hooks / "cloudevents-url"),
        }
    )


@dataclass(frozen=True)
class Notifying:
    """An operator notifying both receivers, and their URLs (with the token)."""

    operator: OperatorProcess
    slack_url: str
    events_url: str


@pytest.fixture
def notifying(
    webhook_token: str,
    slack: Receiver,
    cloudevents: Receiver,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> Notifying:
    slack_url = _slack_url(slack.url(""), webhook_token)
    events_url = cloudevents.url(f"/events?token={webhook_token}")
    operator = _start(operator_factory, tmp_path, slack_url=slack_url, cloudevents_url=events_url)
    return Notifying(operator, slack_url, events_url)


def _succeeded(promotions: Promotions) -> dict[str, Any]:
    promotions.apply("iris", SPEC)
    status = promotions.wait_for_phase("iris", ENDED, timeout=20)
    assert status["phase"] == "Succeeded", status
    return status


def _kinds(received: list[Received]) -> list[str]:
    return [str(r.json()["type"]).removeprefix(CE_PREFIX) for r in received]


def _gave_up(operator: OperatorProcess) -> list[str]:
    return [line for line in operator.log().splitlines() if "gave up on" in line]


def _metrics(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        return str(response.read().decode())


def _metrics_once_counted(
    operator: OperatorProcess, sink: str, result: str, at_least: int, timeout: float = 5.0
) -> str:
    """The metrics page once ``sink`` counted ``at_least`` notices as ``result`` (or at
    the timeout, for the assertion to show what was counted)."""
    deadline = time.monotonic() + timeout
    metrics = _metrics(operator)
    while _counted(metrics, sink, result) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        metrics = _metrics(operator)
    return metrics


def _counted(metrics: str, sink: str, result: str) -> float:
    """modelpromotion_notifications_total{sink, result} (0 if never counted)."""
    for line in metrics.splitlines():
        name, _, value = line.rpartition(" ")
        if (
            name.startswith("modelpromotion_notifications_total{")
            and f'sink="{sink}"' in name
            and f'result="{result}"' in name
        ):
            return float(value)
    return 0.0


def _assert_no_token(
    operator: OperatorProcess, promotions: Promotions, token: str, urls: list[str]
) -> None:
    events = promotions.kube.kubectl(
        "get", "events,modelpromotions", "-n", promotions.namespace, "-o", "json"
    ).stdout
    captured = {"operator output": operator.log(), "events and status": events}
    captured["metrics"] = _metrics(operator)
    assert_no_secrets(captured, {TOKEN_NAME: token, **{f"URL {u}": u for u in urls}})


def test_a_successful_run_notifies_both_sinks_run_started_then_succeeded(
    webhook_token: str,
    seldon: Simulator,
    notifying: Notifying,
    promotions: Promotions,
    slack: Receiver,
    cloudevents: Receiver,
) -> None:
    ns = promotions.namespace

    status = _succeeded(promotions)

    started, succeeded = cloudevents.wait_for(2)
    assert _kinds([started, succeeded]) == ["runstarted", "succeeded"]
    for event in (started, succeeded):
        assert (event.method, event.path) == ("POST", f"/events?token={webhook_token}")
        assert event.header("Content-Type") == CE_CONTENT_TYPE
        body = event.json()
        assert body["specversion"] == "1.0"
        assert body["source"] == (
            f"/apis/deploy.mlops.dev/v1alpha1/namespaces/{ns}/modelpromotions/iris"
        )
        assert body["subject"] == "production/iris"
        assert body["datacontenttype"] == "application/json"
        data = body["data"]
        assert (data["namespace"], data["name"]) == (ns, "iris")
        assert (data["source"], data["target"]) == ("staging/iris", "production/iris")
        assert (data["generation"], data["retry"]) == (1, 0)
        assert data["uid"] == promotions.get("iris")["metadata"]["uid"]
    assert started.json()["id"] != succeeded.json()["id"]
    assert started.json()["data"]["kind"] == "RunStarted"
    assert started.json()["data"]["phase"] not in ENDED
    done = succeeded.json()
    assert done["type"] == "dev.mlops.deploy.modelpromotion.succeeded"
    assert (done["data"]["kind"], done["data"]["phase"]) == ("Succeeded", "Succeeded")
    assert done["data"]["reason"] == "Succeeded"
    assert done["data"]["message"] == promotions.ready("iris")["message"]
    assert done["time"].startswith(status["finishedAt"][:-1])  # same second, RFC 3339

    first, second = slack.wait_for(2)
    assert [(r.method, r.path) for r in (first, second)] == [
        ("POST", f"/services/T0PROMO/B0PROMO/{webhook_token}")
    ] * 2
    assert first.json()["text"].startswith(
        f"ModelPromotion {ns}/iris started a run: staging/iris → production/iris (generation 1)"
    )
    text = second.json()["text"]
    assert text.startswith(
        f"ModelPromotion {ns}/iris succeeded: staging/iris → production/iris (generation 1)\n"
        "Phase Succeeded, reason Succeeded"
    )
    assert second.json()["attachments"][0]["color"] == "#2eb886"

    time.sleep(QUIET_SECONDS)
    assert (len(cloudevents.received), len(slack.received)) == (2, 2)  # once each
    assert _gave_up(notifying.operator) == []
    _assert_no_token(
        notifying.operator,
        promotions,
        webhook_token,
        [notifying.slack_url, notifying.events_url],
    )


def test_a_receiver_that_is_down_does_not_delay_the_run(
    webhook_token: str,
    seldon: Simulator,
    operator_factory: StartOperator,
    promotions: Promotions,
    cloudevents: Receiver,
    tmp_path: Path,
) -> None:
    # Slack is delivered to first: nothing listens there, so each notice is tried four
    # times (0.5 + 1 + 2 s apart) before the next delivery, to the working receiver.
    down = _slack_url(refused_url(""), webhook_token)
    events_url = cloudevents.url(f"/events?token={webhook_token}")
    operator = _start(operator_factory, tmp_path, slack_url=down, cloudevents_url=events_url)

    _succeeded(promotions)

    # The run ended while its notices were still being tried: the Succeeded notice,
    # queued as the run ended, is neither given up on nor delivered yet.
    assert not any("gave up on Succeeded" in line for line in _gave_up(operator))
    assert "succeeded" not in _kinds(cloudevents.received)

    received = cloudevents.wait_for(2, timeout=20)
    assert _kinds(received) == ["runstarted", "succeeded"]
    gave_up = _gave_up(operator)
    assert len(gave_up) == 2, gave_up  # one WARNING per notice, not one per attempt
    for line, kind in zip(gave_up, ("RunStarted", "Succeeded"), strict=True):
        assert "[WARNING" in line, line
        assert (
            f"notification sink slack: gave up on {kind} of {promotions.namespace}/iris "
            "(generation 1) after 4 attempts: connection failed"
        ) in line
    # The receiver records a request before the operator reads its answer and counts it.
    metrics = _metrics_once_counted(operator, "cloudevents", "delivered", 2)
    assert _counted(metrics, "slack", "failed") == 2
    assert _counted(metrics, "cloudevents", "delivered") == 2
    _assert_no_token(operator, promotions, webhook_token, [down, events_url])


def test_a_receiver_answering_500_then_200_gets_the_notice_after_retries(
    webhook_token: str,
    seldon: Simulator,
    notifying: Notifying,
    promotions: Promotions,
    slack: Receiver,
    cloudevents: Receiver,
) -> None:
    cloudevents.script(Answer(500, b"try later"), Answer(500, b"try later"))
    operator = notifying.operator

    _succeeded(promotions)

    received = cloudevents.wait_for(4, timeout=20)
    assert _kinds(received) == ["runstarted"] * 3 + ["succeeded"]
    # The same event each time (a receiver can drop duplicates by source and id).
    assert len({r.body for r in received[:3]}) == 1
    assert received[1].at - received[0].at >= 0.4  # backed off: 0.5 s, then 1 s
    assert received[2].at - received[1].at >= 0.9
    assert _kinds(received)[-1] == "succeeded"
    assert [r.json()["text"].split(":")[0] for r in slack.wait_for(2)] == [
        f"ModelPromotion {promotions.namespace}/iris started a run",
        f"ModelPromotion {promotions.namespace}/iris succeeded",
    ]
    assert _gave_up(operator) == []
    # The receiver has the last notice before the operator has its answer and counts it.
    metrics = _metrics_once_counted(operator, "cloudevents", "delivered", 2)
    assert _counted(metrics, "cloudevents", "delivered") == 2
    assert _counted(metrics, "cloudevents", "failed") == 0
    _assert_no_token(
        operator, promotions, webhook_token, [notifying.slack_url, notifying.events_url]
    )


def test_a_stage_runs_notices_name_its_path_and_stage(
    seldon: Simulator,
    notifying: Notifying,
    promotions: Promotions,
    slack: Receiver,
    cloudevents: Receiver,
) -> None:
    ns = promotions.namespace
    paths = Paths(promotions.kube, ns)

    paths.apply("iris", stage("production"), source={"namespace": "staging", "name": "iris"})
    paths.wait_for("iris", stage_is("production", phase="Succeeded"), "production Succeeded")

    started, succeeded = cloudevents.wait_for(2)
    assert _kinds([started, succeeded]) == ["runstarted", "succeeded"]
    for event in (started, succeeded):
        data = event.json()["data"]
        assert (data["path"], data["stage"]) == ("iris", "production")
    first, second = slack.wait_for(2)
    for notice in (first, second):
        assert f"; stage production of PromotionPath {ns}/iris" in notice.json()["text"]
