"""The operator's own Kubernetes API calls: a throttled answer (429) is sent again after
the server's Retry-After, within the call's time, as client-go does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from promotion_operator.control import kube_api
from promotion_operator.control.kube_api import KubeApi, KubeError, ObjectRef

REF = ObjectRef("ns", "iris", "uid-1")
OBJECT = {"metadata": {"name": "iris", "uid": "uid-1", "resourceVersion": "7"}}


class Answer:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self._data = json.dumps(body).encode()

    def read(self) -> bytes:
        return self._data


class FakeApiClient:
    """Answers calls in order, as the kubernetes client's ApiClient would."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers: Iterator[Answer] = iter(answers)
        self.sent = 0

    def param_serialize(self, method: str, path: str, **_: Any) -> tuple[str, str]:
        return method, path

    def call_api(self, method: str, path: str, **_: Any) -> Answer:
        self.sent += 1
        return next(self.answers)


THROTTLED = Answer(429, {"message": "Too many requests"}, {"Retry-After": "1"})


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("promotion_operator.control.kube_api.time.sleep", slept.append)
    return slept


def api(*answers: Answer) -> tuple[KubeApi, FakeApiClient]:
    client = FakeApiClient(list(answers))
    return KubeApi(client, identity="test"), client  # type: ignore[arg-type]


def test_a_throttled_patch_is_sent_again_after_the_retry_after(waits: list[float]) -> None:
    kube, client = api(THROTTLED, THROTTLED, Answer(200, OBJECT))

    written = kube.patch_promotion(REF, {"status": {}}, resource_version="7", subresource="status")

    assert written == OBJECT
    assert client.sent == 3 and waits == [1.0, 1.0]


def test_a_call_throttled_every_time_fails_with_the_servers_answer(waits: list[float]) -> None:
    kube, client = api(*[THROTTLED] * (kube_api.THROTTLED_RETRIES + 1))

    with pytest.raises(KubeError) as failed:
        kube.get_promotion(REF)

    assert failed.value.status == 429
    assert client.sent == kube_api.THROTTLED_RETRIES + 1


def test_a_retry_after_past_the_calls_time_is_not_waited_for(waits: list[float]) -> None:
    later = Answer(429, {"message": "Too many requests"}, {"Retry-After": "5"})
    kube, client = api(later, Answer(200, {}))

    with pytest.raises(KubeError) as failed:
        kube.get_lease("ns", "lease", timeout=2.0)  # a renewal keeps its deadline

    assert failed.value.status == 429 and client.sent == 1 and waits == []


def test_other_errors_are_not_sent_again(waits: list[float]) -> None:
    kube, client = api(Answer(503, {"message": "etcd unavailable"}), Answer(200, OBJECT))

    with pytest.raises(KubeError) as failed:
        kube.get_promotion(REF)

    assert failed.value.status == 503 and client.sent == 1
