"""The operator's image, built with podman from the Dockerfile and run as a pod runs it:
read-only root filesystem, non-root, the credentials directory and a ServiceAccount
token mounted, against the real apiserver, Keycloak and the Seldon Deploy simulator.

The image is built on a base made here from Debian's packages (no registry image can
be pulled here): the Dockerfile's steps, with ``BASE_IMAGE`` set to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import Keycloak
from tests.harness.operator_container import OperatorContainer, start_container
from tests.harness.operator_image import BuiltImage, build_image
from tests.harness.operator_process import password_credentials
from tests.harness.podman import Podman, ensure_podman
from tests.harness.progress import say
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.rbac import OPERATOR_NAMESPACE, SERVICE_ACCOUNT
from tests.harness.secrets import assert_no_secrets
from tests.harness.simulator import Simulator

pytestmark = [pytest.mark.e2e, pytest.mark.late_build("container-base")]

#: What the Deployment's terminationGracePeriodSeconds must cover: a SIGTERM ends
#: the operator (Kopf stops its watches, the passes finish) well before the kubelet
#: would SIGKILL it.
SIGTERM_EXIT_SECONDS = 5.0


@pytest.fixture(scope="module")
def podman() -> Podman:
    return ensure_podman()


@pytest.fixture(scope="module")
def image(podman: Podman) -> BuiltImage:
    built = build_image(podman)
    say(f"image {built.reference}: {built.size_bytes / 1e6:.0f} MB ({built.size_bytes} bytes)")
    return built


@pytest.fixture
def container(
    podman: Podman,
    image: BuiltImage,
    control_plane: ControlPlane,
    keycloak: Keycloak,
    seldon: Simulator,
    operator_kubeconfig: Path,
    namespace: str,
) -> Iterator[OperatorContainer]:
    """The operator in its container, as manifests/' ServiceAccount (installed by the
    operator_kubeconfig fixture), watching this test's namespace."""
    token = control_plane.kubectl("create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE)
    running = start_container(
        podman,
        image.reference,
        control_plane,
        seldon,
        password_credentials(keycloak),
        token.stdout.strip(),
        namespaces=(namespace,),
    )
    try:
        yield running
    finally:
        assert_no_secrets({"container output": running.log()})
        running.stop()


def test_image_runs_as_user_65532_with_the_operator_from_its_venv(
    podman: Podman, image: BuiltImage
) -> None:
    config = podman.run(
        "image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}}",
        image.reference,
    ).stdout.split(maxsplit=1)  # fmt: skip

    assert config == ["65532:65532", '["promotion-operator"]\n']


def test_containerised_operator_promotes_and_serves_health_and_metrics(
    container: OperatorContainer, promotions: Promotions
) -> None:
    promotions.apply("iris", PROMOTE_IRIS)

    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"
    assert container.healthy()
    metrics = container.metrics_text()
    assert 'modelpromotion_runs_finished_total{outcome="Succeeded",reason="Succeeded"} 1.0' in (
        metrics
    )
    assert "seldon_deploy_requests_total{" in metrics


def test_sigterm_stops_the_container_cleanly_within_5_seconds(
    container: OperatorContainer,
) -> None:
    seconds, code = container.terminate()
    say(f"the container exited {seconds:.2f}s after SIGTERM, with code {code}")

    assert code == 0, container.log()[-3000:]
    assert seconds < SIGTERM_EXIT_SECONDS, f"{seconds:.2f}s"
