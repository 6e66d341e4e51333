"""``kubectl promotion`` against the real kube-apiserver, run as a user runs it: the
installed ``kubectl-promotion`` console script (and ``kubectl promotion``) with
``KUBECONFIG`` set. The test plays the operator: it writes ``status`` with
``kubectl patch --subresource=status``, so no operator runs here (see
test_kubectl_plugin_operator.py for one that does)."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promotion_operator.kubectl_plugin import cli
from promotion_operator.kubectl_plugin.kube import Kube
from promotion_operator.kubectl_plugin.resource import (
    ABORT_ANNOTATION,
    APPROVE_ANNOTATION,
    RESUME_ANNOTATION,
    RETRY_ANNOTATION,
)
from tests.harness.controlplane import ADMIN_USER, ControlPlane
from tests.harness.kubectl_plugin import (
    Plugin,
    crd_status_fields,
    plugin_env,
    run_status,
    user_kubeconfig,
)
from tests.harness.promotions import Promotions

pytestmark = pytest.mark.e2e

SPEC: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
}
CANARY_SPEC: dict[str, Any] = {
    **SPEC,
    "strategy": "Canary",
    "canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": ["errors"]}}]},
    "analysis": {"templates": [{"name": "errors", "query": "vector(0)", "max": 0.05}]},
}
APPROVAL_SPEC: dict[str, Any] = {
    **SPEC,
    # The harness admin is in system:masters: allowed by the shipped admission policy too.
    "approval": {"required": True, "groups": ["system:masters"]},
}
HISTORY = [
    {
        "generation": 1, "retry": 1, "outcome": "Succeeded", "reason": "Succeeded",
        "startedAt": "2026-01-01T01:00:00Z", "finishedAt": "2026-01-01T01:05:00Z",
        "source": "staging/iris", "target": "production/iris", "sourceGeneration": 4,
        "targetGeneration": 9, "images": ["seldonio/sklearn-iris:1.5"],
        "modelUris": ["gs://models/iris/v2"], "approvedBy": "alice",
    },
    {
        "generation": 1, "retry": 0, "outcome": "Failed", "reason": "TargetFailed",
        "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:05:00Z",
        "source": "staging/iris", "target": "production/iris", "sourceGeneration": 3,
        "images": ["seldonio/sklearn-iris:1.4"],
    },
]  # fmt: skip


@pytest.fixture
def plugin(control_plane: ControlPlane, namespace: str) -> Iterator[Plugin]:
    """The plugin as the harness admin, in this test's namespace."""
    running = Plugin(control_plane, namespace, control_plane.kubeconfig)
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def crd_fields(control_plane: ControlPlane, crds: None) -> tuple[set[str], set[str]]:
    return crd_status_fields(control_plane)


def require(crd_fields: tuple[set[str], set[str]], *names: str) -> None:
    """Skip unless the installed CRD declares these status fields or phases (the
    structural schema would prune, or refuse, what it does not declare)."""
    fields, phases = crd_fields
    missing = [n for n in names if n not in fields and n not in phases]
    if missing:
        pytest.skip(f"the ModelPromotion CRD does not declare {', '.join(missing)} yet")


def cells(line: str) -> list[str]:
    """A table row's cells (kubectl separates columns by at least 3 spaces)."""
    return re.split(r"\s{3,}", line.strip())


def _contains(text: str) -> Callable[[str], bool]:
    return lambda line: text in line


def one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), repr(text)
    assert "Traceback" not in text
    return text.strip()


# --- list, get, history -------------------------------------------------------------------


def test_list_get_and_history_show_what_the_status_says(
    plugin: Plugin, promotions: Promotions, crd_fields: tuple[set[str], set[str]]
) -> None:
    require(crd_fields, "history", "retry", "approval", "lastRetry")
    ns = plugin.namespace
    promotions.apply("iris", {**APPROVAL_SPEC, "approval": {"required": True}})
    promotions.apply("canary", CANARY_SPEC)
    promotions.apply("fresh", SPEC)
    approval = {"by": "alice", "at": "2026-01-01T00:59:00Z"}
    plugin.set_status(
        "iris",
        run_status("Succeeded", retry=1, last_retry="t1", approval=approval, history=HISTORY),
    )
    measurement = {"template": "errors", "value": 0.01, "max": 0.05, "result": "Passed"}
    measurement["at"] = "2026-01-01T00:02:00Z"
    plugin.set_status(
        "canary",
        run_status(
            "Analyzing",
            message="measuring errors",
            canary={"step": 1, "weight": 20, "measurements": [measurement]},
        ),
    )

    listed = plugin.run("list")
    assert listed.returncode == 0, listed.stderr
    rows = [cells(line) for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "SOURCE", "TARGET", "PHASE", "REASON", "WEIGHT", "AGE"]
    assert rows[1][:6] == [
        "canary",
        "staging/iris",
        "production/iris",
        "Analyzing",
        "Analyzing",
        "20",
    ]
    # No status yet: the spec's source and target; blank phase, reason and weight.
    assert rows[2][:3] == ["fresh", "staging/iris", "production/iris"]
    assert len(rows[2]) == 4
    # A Replace run has no weight (blank).
    assert rows[3][:5] == ["iris", "staging/iris", "production/iris", "Succeeded", "Succeeded"]
    assert len(rows[3]) == 6
    assert re.fullmatch(r"\d+s", rows[3][-1])

    everywhere = plugin.run("list", "-A", namespaced=False)
    assert everywhere.returncode == 0, everywhere.stderr
    header, *lines = everywhere.stdout.splitlines()
    assert cells(header)[:2] == ["NAMESPACE", "NAME"]
    assert [ns, "iris"] in [cells(line)[:2] for line in lines]

    wide = plugin.run("list", "-o", "wide")
    assert cells(wide.stdout.splitlines()[0])[-5:] == [
        "STRATEGY", "RUN", "STEP", "APPROVED BY", "MESSAGE",
    ]  # fmt: skip
    assert cells(wide.stdout.splitlines()[1])[-4:] == ["Canary", "1.0", "1/2", "measuring errors"]
    as_json = json.loads(plugin.run("list", "-o", "json").stdout)
    assert sorted(item["metadata"]["name"] for item in as_json["items"]) == [
        "canary", "fresh", "iris",
    ]  # fmt: skip

    got = plugin.run("get", "iris")
    assert got.returncode == 0, got.stderr
    for expected in (
        "Name:         iris",
        f"Namespace:    {ns}",
        "Source:       staging/iris",
        "Target:       production/iris",
        "Strategy:     Replace",
        "Approval:     required; approved by alice at 2026-01-01T00:59:00Z",
        "Run:          1.1 (generation 1, retry 1)",
        "Ready:        True Succeeded",
        "Message:      succeeded (set by the test)",
        "History (last 2 of 2; kubectl promotion history):",
    ):
        assert expected in got.stdout, got.stdout
    canary = plugin.run("get", "canary").stdout
    assert "Canary:       step 1 of 2, weight 20%" in canary
    assert cells(canary.splitlines()[-1]) == [
        "errors", "Passed", "0.01", "-", "0.05", "2026-01-01T00:02:00Z",
    ]  # fmt: skip
    assert yaml.safe_load(plugin.run("get", "iris", "-o", "yaml").stdout)["status"]["retry"] == 1
    assert json.loads(plugin.run("get", "iris", "-o", "json").stdout)["spec"]["approval"]

    history = plugin.run("history", "iris")
    assert history.returncode == 0, history.stderr
    assert [cells(line) for line in history.stdout.splitlines()] == [
        ["RUN", "OUTCOME", "REASON", "STARTED", "FINISHED", "SOURCE GEN", "TARGET GEN", "IMAGES"],
        ["1.1", "Succeeded", "Succeeded", "2026-01-01T01:00:00Z", "2026-01-01T01:05:00Z",
         "4", "9", "seldonio/sklearn-iris:1.5"],
        ["1.0", "Failed", "TargetFailed", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z",
         "3", "-", "seldonio/sklearn-iris:1.4"],
    ]  # fmt: skip
    wide_history = plugin.run("history", "iris", "-o", "wide").stdout.splitlines()
    assert cells(wide_history[1])[-4:] == [
        "gs://models/iris/v2", "alice", "staging/iris", "production/iris",
    ]  # fmt: skip
    entries = json.loads(plugin.run("history", "iris", "-o", "json").stdout)
    assert [(e["generation"], e["retry"]) for e in entries] == [(1, 1), (1, 0)]
    empty = plugin.run("history", "fresh")
    assert (empty.returncode, empty.stdout) == (0, "")
    assert one_line(empty.stderr) == f"No finished runs of {ns}/fresh yet."


def test_kubectl_finds_the_plugin_and_the_namespace_comes_from_the_context(
    plugin: Plugin, promotions: Promotions, tmp_path: Path
) -> None:
    promotions.apply("iris", SPEC)
    through_kubectl = plugin.through_kubectl("list")
    assert through_kubectl.returncode == 0, through_kubectl.stderr
    assert [cells(line)[0] for line in through_kubectl.stdout.splitlines()] == ["NAME", "iris"]

    # A kubeconfig whose context names the namespace: no -n needed.
    config = tmp_path / "kubeconfig"
    config.write_text(plugin.kube.kubeconfig.read_text())
    plugin.kube.kubectl(
        "config", "set-context", "harness", f"--namespace={plugin.namespace}",
        f"--kubeconfig={config}",
    )  # fmt: skip
    in_context = plugin.as_user(config).run("list", namespaced=False)
    assert in_context.returncode == 0, in_context.stderr
    assert [cells(line)[0] for line in in_context.stdout.splitlines()] == ["NAME", "iris"]
    # The flag wins over the context; an empty namespace says so, as kubectl does.
    empty = plugin.as_user(config).run("list", "--namespace", "default", namespaced=False)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert one_line(empty.stderr) == "No resources found in default namespace."


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "nope"],
        ["history", "nope"],
        ["watch", "nope"],
        ["approve", "nope"],
        ["abort", "nope"],
        ["retry", "nope", "--watch"],
        ["resume", "nope"],
    ],
)
def test_not_found_is_one_line_and_exit_5(plugin: Plugin, argv: list[str]) -> None:
    result = plugin.run(*argv)
    assert result.returncode == 5
    assert result.stdout == ""
    assert one_line(result.stderr) == (
        'Error from server (NotFound): modelpromotions.deploy.mlops.dev "nope" not found'
    )


# --- requests -----------------------------------------------------------------------------


def _recent(stamp: str) -> bool:
    moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return abs((datetime.datetime.now(datetime.UTC) - moment).total_seconds()) < 60


def test_approve_abort_retry_and_resume_set_their_annotations(
    plugin: Plugin, promotions: Promotions, crd_fields: tuple[set[str], set[str]]
) -> None:
    require(crd_fields, "AwaitingApproval", "lastRetry")
    obj = "modelpromotion.deploy.mlops.dev"
    for name in ("gate", "running", "failed", "paused"):
        promotions.apply(name, APPROVAL_SPEC if name == "gate" else SPEC)
    plugin.set_status("gate", run_status("AwaitingApproval"))
    plugin.set_status("running", run_status("Verifying", reason="WaitingForAvailable"))
    plugin.set_status("failed", run_status("Failed", outcome="TargetFailed"))
    plugin.set_status("paused", run_status("Paused"))

    # approve: the caller's own user name, from a SelfSubjectReview.
    approved = plugin.run("approve", "gate")
    assert (approved.returncode, approved.stderr) == (0, "")
    assert approved.stdout == f"{obj}/gate: approved as {ADMIN_USER}\n"
    assert plugin.annotations("gate")[APPROVE_ANNOTATION] == ADMIN_USER
    again = plugin.run("approve", "gate")
    assert again.stdout == (
        f"{obj}/gate: already approved by you ({ADMIN_USER}); waiting for the operator\n"
    )
    not_needed = plugin.run("approve", "running")
    assert not_needed.returncode == 0
    assert APPROVE_ANNOTATION not in plugin.annotations("running")

    # abort: when it was asked; once.
    aborted = plugin.run("abort", "running")
    assert aborted.stdout == f"{obj}/running: abort requested for run 1.0 (Verifying)\n"
    stamp = plugin.annotations("running")[ABORT_ANNOTATION]
    assert _recent(stamp)
    twice = plugin.run("abort", "running")
    assert twice.returncode == 0
    assert "abort already requested at" in twice.stdout
    assert plugin.annotations("running")[ABORT_ANNOTATION] == stamp
    finished = plugin.run("abort", "failed")
    assert finished.stdout == f"{obj}/failed: nothing to abort: run 1.0 ended Failed\n"
    assert ABORT_ANNOTATION not in plugin.annotations("failed")

    # retry: a fresh token; a second request joins the first instead of replacing it.
    retried = plugin.run("retry", "failed")
    assert retried.returncode == 0, retried.stderr
    token = plugin.annotations("failed")[RETRY_ANNOTATION]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ-[0-9a-f]{6}", token)
    assert _recent(token[:20])
    assert retried.stdout == f"{obj}/failed: retry requested ({token}) of run 1.0 (Failed)\n"
    joined = plugin.run("retry", "failed")
    assert "a retry is already requested" in joined.stdout
    assert plugin.annotations("failed")[RETRY_ANNOTATION] == token
    # Once handled (the operator records the token), a new request gets a new token.
    plugin.set_status("failed", run_status("Failed", outcome="TargetFailed", last_retry=token))
    assert plugin.run("retry", "failed").returncode == 0
    assert plugin.annotations("failed")[RETRY_ANNOTATION] != token
    busy = plugin.run("retry", "running")
    assert busy.returncode == 6
    assert one_line(busy.stderr) == (
        f"error: {obj}/running: run 1.0 is still Verifying: retry once it has ended "
        "(or abort it first)"
    )
    assert RETRY_ANNOTATION not in plugin.annotations("running")

    # resume: only a paused run.
    resumed = plugin.run("resume", "paused")
    assert resumed.stdout == f"{obj}/paused: resume requested for run 1.0\n"
    assert plugin.annotations("paused")[RESUME_ANNOTATION] == "true"
    assert "nothing to resume" in plugin.run("resume", "running").stdout
    assert RESUME_ANNOTATION not in plugin.annotations("running")


def _in_process(monkeypatch: pytest.MonkeyPatch, between: Any) -> list[int]:
    """Run the plugin in this process, with ``between()`` run by another writer right
    after the plugin's first read and before its write. Returns the reads' count."""
    reads: list[int] = []
    original = Kube.get

    def get(self: Kube, namespace: str, name: str) -> dict[str, Any]:
        body = original(self, namespace, name)
        reads.append(1)
        if len(reads) == 1:
            between()
        return body

    monkeypatch.setattr(Kube, "get", get)
    return reads


def test_a_conflict_between_read_and_write_is_read_again_and_nothing_is_lost(
    plugin: Plugin,
    promotions: Promotions,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The plugin runs in this process so that another writer (kubectl as the admin)
    # changes the object exactly between the plugin's GET and its PATCH: the real
    # apiserver then refuses the PATCH's resourceVersion with 409 Conflict.
    promotions.apply("iris", SPEC)
    plugin.set_status("iris", run_status("Verifying", reason="WaitingForAvailable"))
    before = plugin.get("iris")["metadata"]["resourceVersion"]
    reads = _in_process(
        monkeypatch, lambda: plugin.annotate("iris", **{"team.example/owner": "ml"})
    )

    code = cli.main(
        ["abort", "iris", "-n", plugin.namespace, "--kubeconfig", str(plugin.kubeconfig), "-v"]
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(reads) == 2
    assert err.startswith(f"conflict: {plugin.namespace}/iris changed since it was read ")
    assert f"(resourceVersion {before}); reading it again (1/5)" in err
    assert "abort requested for run 1.0" in out
    annotations = plugin.annotations("iris")
    assert annotations["team.example/owner"] == "ml"  # the other writer's change
    assert _recent(annotations[ABORT_ANNOTATION])  # and the request


def test_someone_elses_request_that_won_the_race_is_kept(
    plugin: Plugin,
    promotions: Promotions,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    promotions.apply("iris", SPEC)
    plugin.set_status("iris", run_status("Verifying", reason="WaitingForAvailable"))
    theirs = "2026-01-01T00:00:00Z"
    _in_process(monkeypatch, lambda: plugin.annotate("iris", **{ABORT_ANNOTATION: theirs}))

    code = cli.main(
        ["abort", "iris", "-n", plugin.namespace, "--kubeconfig", str(plugin.kubeconfig)]
    )

    out, _ = capsys.readouterr()
    assert code == 0
    assert f"abort already requested at {theirs}; waiting for the operator" in out
    assert plugin.annotations("iris")[ABORT_ANNOTATION] == theirs


def test_a_user_without_patch_gets_the_servers_forbidden(
    plugin: Plugin, promotions: Promotions, tmp_path: Path, crd_fields: tuple[set[str], set[str]]
) -> None:
    require(crd_fields, "AwaitingApproval")
    promotions.apply("iris", APPROVAL_SPEC)
    plugin.set_status("iris", run_status("AwaitingApproval"))
    viewer = plugin.as_user(
        user_kubeconfig(
            plugin.kube, plugin.namespace, "viewer", ["get", "list", "watch"], tmp_path / "viewer"
        )
    )
    assert viewer.run("get", "iris").returncode == 0
    assert viewer.run("list").returncode == 0
    refused = viewer.run("approve", "iris")
    assert refused.returncode == 6
    assert one_line(refused.stderr) == (
        'Error from server (Forbidden): modelpromotions.deploy.mlops.dev "iris" is forbidden: '
        f'User "system:serviceaccount:{plugin.namespace}:viewer" cannot patch resource '
        f'"modelpromotions" in API group "deploy.mlops.dev" in the namespace "{plugin.namespace}"'
    )
    assert APPROVE_ANNOTATION not in plugin.annotations("iris")
    cannot_list = viewer.run("list", "-A", namespaced=False)
    assert cannot_list.returncode == 6
    assert one_line(cannot_list.stderr).startswith("Error from server (Forbidden): ")


POLICIES = Path(__file__).resolve().parents[2] / "manifests" / "policies"


def test_the_admission_policy_refuses_an_approver_outside_the_groups(
    plugin: Plugin,
    promotions: Promotions,
    tmp_path: Path,
    crd_fields: tuple[set[str], set[str]],
) -> None:
    if not (POLICIES / "kustomization.yaml").exists():
        pytest.skip("manifests/policies/ (the approval admission policy) is not there yet")
    require(crd_fields, "AwaitingApproval")
    ns = plugin.namespace
    kube = plugin.kube
    # Cluster-scoped and idempotent: what installing manifests/ applies anyway.
    kube.kubectl("apply", "-k", str(POLICIES))
    other = f"{ns}-others"
    kube.kubectl("create", "namespace", other)
    try:
        verbs = ["get", "list", "watch", "patch"]
        approver = plugin.as_user(
            user_kubeconfig(kube, ns, "approver", verbs, tmp_path / "approver")
        )
        outsider = plugin.as_user(
            user_kubeconfig(kube, other, "outsider", verbs, tmp_path / "outsider", grant_in=ns)
        )
        # Members: the ServiceAccounts of this test's namespace, not of the other one.
        group = f"system:serviceaccounts:{ns}"
        promotions.apply("iris", {**SPEC, "approval": {"required": True, "groups": [group]}})
        plugin.set_status("iris", run_status("AwaitingApproval"))
        _wait_until_the_policy_refuses(
            kube, outsider.kubeconfig, ns, f"system:serviceaccount:{other}:outsider"
        )

        refused = outsider.run("approve", "iris")
        assert refused.returncode == 6, refused.stdout
        message = one_line(refused.stderr)
        assert message.startswith("Error from server (Forbidden): "), message
        assert (
            f"system:serviceaccount:{other}:outsider may not approve ModelPromotion {ns}/iris: "
            f"only members of spec.approval.groups ({group}) may approve it"
        ) in message
        assert APPROVE_ANNOTATION not in plugin.annotations("iris")

        approved = approver.run("approve", "iris")
        assert approved.returncode == 0, approved.stderr
        user = f"system:serviceaccount:{ns}:approver"
        assert approved.stdout.endswith(f"approved as {user}\n")
        assert plugin.annotations("iris")[APPROVE_ANNOTATION] == user
    finally:
        kube.kubectl("delete", "namespace", other, "--wait=false")


def _wait_until_the_policy_refuses(
    kube: ControlPlane, kubeconfig: Path, namespace: str, user: str
) -> None:
    """A new ValidatingAdmissionPolicy takes a moment to be enforced: try (dry run)."""
    deadline = time.monotonic() + 30
    while True:
        attempt = subprocess.run(
            [
                str(kube.binaries.kubectl), "annotate", "mp", "iris", "-n", namespace,
                f"{APPROVE_ANNOTATION}={user}", "--dry-run=server",
            ],
            env=plugin_env(kubeconfig),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip
        if attempt.returncode != 0 and "may not approve" in attempt.stderr:
            return
        assert time.monotonic() < deadline, f"the policy never refused: {attempt.stderr}"
        time.sleep(0.5)


# --- watch --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("final", "reason", "outcome", "code", "words"),
    [
        ("Succeeded", "Succeeded", None, 0, "succeeded (Succeeded, Succeeded)"),
        ("Succeeded", "DryRun", None, 0, "succeeded (Succeeded, DryRun)"),
        ("Failed", "TargetFailed", "TargetFailed", 1, "failed (Failed, TargetFailed)"),
        ("RolledBack", "RolledBack", "VerificationTimedOut", 2,
         "was rolled back (RolledBack, VerificationTimedOut)"),
        ("Aborted", "Aborted", "Aborted", 3, "was aborted (Aborted, Aborted)"),
        ("RolledBack", "RolledBack", "Aborted", 3, "was aborted (RolledBack, Aborted)"),
    ],
)  # fmt: skip
def test_watch_prints_each_change_and_its_exit_code_says_how_the_run_ended(
    plugin: Plugin,
    promotions: Promotions,
    crd_fields: tuple[set[str], set[str]],
    final: str,
    reason: str,
    outcome: str | None,
    code: int,
    words: str,
) -> None:
    require(crd_fields, final)
    promotions.apply("iris", CANARY_SPEC)
    watching = plugin.start("watch", "iris", "--timeout", "60s")
    watching.wait_for_line(lambda line: "no status yet" in line)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("Pending", {}),
        ("Promoting", {"canary": {"step": 0, "weight": 0}}),
        ("Verifying", {"canary": {"step": 0, "weight": 20}}),
        ("Analyzing", {"canary": {"step": 1, "weight": 20}}),
    ]
    for phase, extra in steps:
        plugin.set_status("iris", run_status(phase, canary=extra.get("canary")))
        watching.wait_for_line(_contains(f"  {phase}"))
    plugin.set_status("iris", run_status(final, reason=reason, outcome=outcome, canary=None))

    assert watching.wait(30) == code, watching.stderr
    assert watching.stderr == ""
    states = [line.split("  ", 1)[1] for line in watching.lines[:-1]]
    assert states == [
        "no status yet (waiting for the operator)",
        "run 1.0  Pending: pending (set by the test)",
        "run 1.0  Promoting  canary step 0 of 2, weight 0%: promoting (set by the test)",
        "run 1.0  Verifying  canary step 0 of 2, weight 20%: verifying (set by the test)",
        "run 1.0  Analyzing  canary step 1 of 2, weight 20%: analyzing (set by the test)",
        f"run 1.0  {final}"
        + (f" ({reason})" if reason != final else "")
        + f": {final.lower()} (set by the test)",
    ]
    assert watching.lines[-1] == f"{plugin.namespace}/iris: run 1.0 {words}"


def test_watch_times_out_with_exit_4(plugin: Plugin, promotions: Promotions) -> None:
    promotions.apply("iris", SPEC)
    plugin.set_status("iris", run_status("Verifying", reason="WaitingForAvailable"))
    started = time.monotonic()
    result = plugin.run("watch", "iris", "--timeout", "3s")
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    # It waited out its timeout and no longer; the upper bound only catches a hang
    # (a Python start on a loaded machine alone took over 10 s).
    assert 3 <= elapsed < 60
    assert result.stdout.splitlines()[-1] == (
        f"{plugin.namespace}/iris: timed out after 3s waiting for the run to end: "
        "run 1.0 is Verifying"
    )


def test_watch_waits_for_the_new_generation_and_a_pending_retry(
    plugin: Plugin, promotions: Promotions, crd_fields: tuple[set[str], set[str]]
) -> None:
    require(crd_fields, "lastRetry")
    promotions.apply("iris", SPEC)
    plugin.set_status("iris", run_status("Succeeded"))
    promotions.patch_spec("iris", {"dryRun": True})  # generation 2, not started yet
    watching = plugin.start("watch", "iris", "--timeout", "60s")
    watching.wait_for_line(lambda line: "[generation 2 not started yet]" in line)
    time.sleep(1)
    assert watching.running(), "watch took the previous generation's Succeeded for its own"
    plugin.set_status("iris", run_status("Validating", generation=2))
    watching.wait_for_line(lambda line: "run 2.0  Validating" in line)
    plugin.set_status("iris", run_status("Failed", generation=2, outcome="Invalid"))
    assert watching.wait(30) == 1

    # Someone asked for a retry the operator has not acted on: the Failed is the old run's.
    plugin.annotate("iris", **{RETRY_ANNOTATION: "theirs"})
    pending = plugin.run("watch", "iris", "--timeout", "2s")
    assert pending.returncode == 4
    assert pending.stdout.splitlines()[-1].endswith(
        "run 2.0 is Failed; retry theirs has not started yet"
    )


def test_retry_watch_follows_the_new_run_not_the_previous_outcome(
    plugin: Plugin, promotions: Promotions, crd_fields: tuple[set[str], set[str]]
) -> None:
    require(crd_fields, "lastRetry", "retry")
    promotions.apply("iris", SPEC)
    plugin.set_status("iris", run_status("Failed", outcome="TargetFailed", last_retry="older"))
    watching = plugin.start("retry", "iris", "--watch", "--timeout", "60s")
    asked = watching.wait_for_line(lambda line: "retry requested" in line)
    token = plugin.annotations("iris")[RETRY_ANNOTATION]
    assert f"retry requested ({token}) of run 1.0 (Failed)" in asked
    watching.wait_for_line(lambda line: f"[retry {token} requested, not started yet]" in line)
    # The old run's status written again (the operator has not acted yet): still waiting.
    plugin.set_status(
        "iris", run_status("Failed", outcome="TargetFailed", last_retry="older", attempts=7)
    )
    time.sleep(1.5)
    assert watching.running(), f"stopped on the previous run's Failed: {watching.lines}"

    # The operator acts on it: run 1.1, in the same write as the token.
    plugin.set_status("iris", run_status("Pending", retry=1, last_retry=token))
    watching.wait_for_line(lambda line: "run 1.1  Pending" in line)
    plugin.set_status("iris", run_status("Succeeded", retry=1, last_retry=token))
    assert watching.wait(30) == 0, watching.stderr
    assert (
        watching.lines[-1] == f"{plugin.namespace}/iris: run 1.1 succeeded (Succeeded, Succeeded)"
    )


def test_watch_with_a_user_who_may_not_watch_polls(
    plugin: Plugin, promotions: Promotions, tmp_path: Path
) -> None:
    promotions.apply("iris", SPEC)
    plugin.set_status("iris", run_status("Verifying", reason="WaitingForAvailable"))
    getter = plugin.as_user(
        user_kubeconfig(plugin.kube, plugin.namespace, "getter", ["get"], tmp_path / "getter")
    )
    watching = getter.start("watch", "iris", "--timeout", "60s")
    watching.wait_for_line(lambda line: "Verifying" in line)
    plugin.set_status("iris", run_status("RolledBack", outcome="TargetFailed"))
    assert watching.wait(30) == 2
    assert "cannot watch resource" in watching.stderr
    assert "polling every 2s instead" in watching.stderr
