"""GitOps namespaces: commits, repository-first reads, sync delay, history calls."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import ApiCaller, RunningSimulator, deployment_body, wait_for

NS = "gitops-prod"
ALICE = "alice@example.com"


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.set_delays(rollout_seconds=0.3, gitops_sync_seconds=0.3)
    control.add_namespace(NS, gitops=True, users={ALICE: ["read", "write"]})
    control.add_namespace("plain", users={ALICE: ["read", "write"]})
    return control


@pytest.fixture
def api(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(ALICE))


def _status(api: ApiCaller, name: str) -> tuple[Any, Any] | None:
    status = api.read(NS, name).json().get("status")
    return None if status is None else (status["state"], status["observedGeneration"])


def _observe_until(api: ApiCaller, name: str, final: tuple[str, int]) -> list[Any]:
    """Distinct statuses seen, in order, until `final` shows up."""
    seen: list[Any] = []

    def probe() -> bool:
        current = _status(api, name)
        if not seen or seen[-1] != current:
            seen.append(current)
        return current == final

    wait_for(probe, timeout=5, interval=0.01)
    return seen


def test_write_is_a_commit_with_action_message_and_author(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    params = {"action": "Promote", "message": "promote iris from staging"}
    assert api.create(NS, deployment_body("iris"), params=params).status_code == 200
    (commit,) = ctl.commits(NS, "iris")
    assert commit["action"] == "Promote"
    assert commit["message"] == "promote iris from staging"
    assert commit["author"] == ALICE
    assert commit["namespace"] == NS and commit["name"] == "iris"
    assert commit["spec"] == deployment_body("iris")["spec"]
    assert len(commit["id"]) == 40 and int(commit["id"], 16) >= 0


def test_writes_in_plain_namespaces_make_no_commit(ctl: SimulatorControl, api: ApiCaller) -> None:
    api.create("plain", deployment_body("iris"))
    assert ctl.commits() == []


def test_new_deployment_has_no_status_until_synced(api: ApiCaller) -> None:
    created = api.create(NS, deployment_body("iris")).json()
    assert "status" not in created
    assert _observe_until(api, "iris", ("Available", 1)) == [
        None,
        ("Creating", 1),
        ("Available", 1),
    ]


def test_update_is_read_at_once_but_status_stays_old_until_sync(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.seed_deployment(NS, deployment_body("iris"))
    updated = api.update(NS, "iris", deployment_body("iris", image="iris:2")).json()
    assert updated["metadata"]["generation"] == 2
    assert updated["status"]["state"] == "Available"
    assert updated["status"]["observedGeneration"] == 1
    read = api.read(NS, "iris").json()
    assert read["spec"] == deployment_body("iris", image="iris:2")["spec"]
    assert _observe_until(api, "iris", ("Available", 2)) == [
        ("Available", 1),
        ("Creating", 2),
        ("Available", 2),
    ]


def test_failing_deployment_fails_after_sync(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.mark_failing(NS, "iris")
    api.create(NS, deployment_body("iris"))
    assert _observe_until(api, "iris", ("Failed", 1))[-1] == ("Failed", 1)


def test_delete_disappears_from_reads_at_once(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_deployment(NS, deployment_body("iris"))
    api.delete(NS, "iris", params={"action": "Delete", "message": "retire"})
    assert api.read(NS, "iris").status_code == 404
    last = ctl.commits(NS, "iris")[-1]
    assert (last["action"], last["message"], last["spec"]) == ("Delete", "retire", None)


def test_gitlogs_lists_commits_newest_first_as_audit_logs(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"), params={"action": "Create", "message": "one"})
    api.update(NS, "iris", deployment_body("iris", replicas=2), params={"message": "two"})
    logs = api.gitlogs(NS, "iris").json()
    assert [entry["Message"] for entry in logs] == ["two", "one"]
    for entry in logs:
        assert {"Hash", "AuthorName", "AuthorWhen", "CommitterName", "CommitterWhen"} <= set(entry)
        assert entry["AuthorName"] == ALICE


def test_gitlogs_in_a_plain_namespace_is_400(api: ApiCaller) -> None:
    api.create("plain", deployment_body("iris"))
    response = api.gitlogs("plain", "iris")
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_gitrevert_restores_the_state_before_the_commit(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    api.create(NS, deployment_body("iris", image="iris:1"))
    api.update(NS, "iris", deployment_body("iris", image="iris:2"))
    bad = ctl.commits(NS, "iris")[-1]["id"]
    response = api.gitrevert(NS, "iris", bad, params={"action": "Rollback", "message": "undo"})
    assert response.status_code == 200
    assert set(response.json()) == {"code", "message"}
    read = api.read(NS, "iris").json()
    assert read["spec"] == deployment_body("iris", image="iris:1")["spec"]
    assert read["metadata"]["generation"] == 3
    revert = ctl.commits(NS, "iris")[-1]
    assert (revert["action"], revert["message"], revert["author"]) == ("Rollback", "undo", ALICE)


def test_gitrevert_of_the_create_commit_deletes(ctl: SimulatorControl, api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    first = ctl.commits(NS, "iris")[0]["id"]
    assert api.gitrevert(NS, "iris", first[:7]).status_code == 200
    assert api.read(NS, "iris").status_code == 404


def test_gitrevert_of_an_unknown_commit_is_404(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    assert api.gitrevert(NS, "iris", "0" * 40).status_code == 404


def test_gitrevert_without_hash_is_400(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    path = f"/namespaces/{NS}/seldondeployments/iris/gitrevert"
    assert api.call("POST", path).status_code == 400


def test_gitrestore_brings_back_a_deleted_deployment(ctl: SimulatorControl, api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris", image="iris:1"))
    api.delete(NS, "iris")
    assert api.gitrestore(NS, "iris").status_code == 200
    read = api.read(NS, "iris").json()
    assert read["spec"] == deployment_body("iris", image="iris:1")["spec"]
    assert ctl.commits(NS, "iris")[-1]["action"] == "Restore"


def test_gitrestore_of_an_existing_deployment_is_409(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    assert api.gitrestore(NS, "iris").status_code == 409
