"""The Dockerfile and .dockerignore, checked without a container engine: linted with
hadolint at its default settings and parsed with dockerfile-parse.

tests/e2e/test_image_entrypoint.py runs the same pip commands and the entrypoint.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

PATCH_TAG = re.compile(r"^(?P<version>\d+\.\d+\.\d+)-slim-[a-z]+$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
NUMERIC_USER = re.compile(r"^(?P<uid>\d+)(?::(?P<gid>\d+))?$")
COMPILERS = {"gcc", "g++", "cc", "clang", "build-essential", "make", "libc6-dev", "python3-dev"}

Instruction = dict[str, Any]


@functools.cache
def parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


@functools.cache
def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        table: dict[str, Any] = tomllib.load(file)["project"]
    return table


def stages() -> list[list[Instruction]]:
    """The instructions of each build stage, its FROM first, without comments."""
    result: list[list[Instruction]] = []
    for instruction in parser().structure:
        if instruction["instruction"] == "FROM":
            result.append([instruction])
        elif instruction["instruction"] != "COMMENT" and result:
            result[-1].append(instruction)
    return result


def final_stage() -> list[Instruction]:
    return stages()[-1]


def of_kind(stage: list[Instruction], kind: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == kind]


def from_image(from_value: str) -> str:
    """`[--platform=...] image [AS name]` -> image."""
    return next(word for word in from_value.split() if not word.startswith("--"))


def stage_name(stage: list[Instruction]) -> str | None:
    words = stage[0]["value"].split()
    return words[-1] if len(words) >= 3 and words[-2].lower() == "as" else None


def split_image(image: str) -> tuple[str, str, str | None]:
    """`name:tag@digest` -> (name, tag, digest)."""
    reference, _, digest = image.partition("@")
    name, _, tag = reference.rpartition(":")
    return name, tag, digest or None


def mounts(run_value: str) -> list[dict[str, str]]:
    """The `--mount=` options of a RUN, each as a dict of its fields."""
    found = []
    for word in shlex.split(run_value):
        if not word.startswith("--mount="):
            continue
        fields = dict(
            field.partition("=")[::2] for field in word.removeprefix("--mount=").split(",")
        )
        found.append(fields)
    return found


def shell_commands(run_value: str) -> list[list[str]]:
    """The simple commands of a RUN (split at && ; ||), as words."""
    words = shlex.split(run_value)
    commands: list[list[str]] = [[]]
    for word in words:
        if word in {"&&", "||", ";"}:
            commands.append([])
        elif not (word.startswith("--mount=") and not commands[-1]):
            commands[-1].append(word)
    return [command for command in commands if command]


def pip_installs(stage: list[Instruction]) -> list[list[str]]:
    """Every `pip install` / `python -m pip install` command of a stage."""
    found = []
    for run in of_kind(stage, "RUN"):
        for command in shell_commands(run):
            text = " ".join(command)
            if re.search(r"(^|\s|/)(pip3?|python3?(\.\d+)? -m pip) install\b", text):
                found.append(command)
    return found


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore syntax (Go's filepath.Match plus `**`) as a regex."""
    pattern = pattern.strip("/")
    parts, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            parts.append(pattern[i : end + 1])
            i = end + 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts))


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context:
    the last pattern matching it or one of its parent directories decides."""
    segments = path.strip("/").split("/")
    candidates = ["/".join(segments[: n + 1]) for n in range(len(segments))]
    result = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not negated
    return result


def test_hadolint_reports_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary is not None, "hadolint is missing: install the project's test extras"

    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_has_a_build_stage_and_a_final_stage() -> None:
    assert parser().is_multistage
    assert len(stages()) >= 2


def test_every_base_image_is_pinned_to_a_patch_release_and_a_digest() -> None:
    for image in parser().parent_images:
        name, tag, digest = split_image(image)
        assert name == "python", image
        assert PATCH_TAG.match(tag), f"{image}: not an exact x.y.z-slim-<debian> tag"
        assert digest is not None and DIGEST.match(digest), f"{image}: no sha256 digest"


def test_all_stages_use_the_same_base_image() -> None:
    assert len({from_image(stage[0]["value"]) for stage in stages()}) == 1
    assert len(set(parser().parent_images)) == 1


def test_base_image_is_a_build_argument_whose_default_is_the_pinned_image() -> None:
    """The e2e test builds the same steps on a base made from Debian's packages."""
    (argument,) = [i["value"] for i in parser().structure if i["instruction"] == "ARG"][:1]
    name, _, default = argument.partition("=")

    assert name == "BASE_IMAGE"
    assert {from_image(stage[0]["value"]) for stage in stages()} == {"${BASE_IMAGE}"}
    assert parser().parent_images == [default] * len(stages())


def test_base_image_python_satisfies_requires_python() -> None:
    _, tag, _ = split_image(parser().parent_images[-1])
    match = PATCH_TAG.match(tag)
    assert match is not None

    assert match["version"] in SpecifierSet(project()["requires-python"])


def test_final_stage_runs_as_a_numeric_non_root_user_before_the_entrypoint() -> None:
    stage = final_stage()
    kinds = [i["instruction"] for i in stage]
    users = of_kind(stage, "USER")
    assert users, "the final stage sets no USER"
    last_user = max(n for n, kind in enumerate(kinds) if kind == "USER")

    match = NUMERIC_USER.match(users[-1])
    assert match is not None, f"USER {users[-1]} is not numeric uid[:gid]"
    assert int(match["uid"]) != 0 and int(match["gid"] or 1) != 0
    assert last_user < kinds.index("ENTRYPOINT")


def test_final_stage_sets_a_workdir() -> None:
    assert of_kind(final_stage(), "WORKDIR")


def test_entrypoint_is_the_console_script_in_exec_form() -> None:
    (entrypoint,) = of_kind(final_stage(), "ENTRYPOINT")

    assert json.loads(entrypoint) == ["promotion-operator"]
    assert "promotion-operator" in project()["scripts"]


def test_cmd_watches_all_namespaces_serves_liveness_and_logs_json() -> None:
    cmd = json.loads(parser().cmd)

    assert "--all-namespaces" in cmd
    assert "--log-format=json" in cmd
    assert any(arg.startswith("--liveness=http://0.0.0.0:") for arg in cmd)


def test_exposes_the_liveness_port_of_cmd_and_the_metrics_port() -> None:
    exposed = {
        int(port.split("/")[0])
        for value in of_kind(final_stage(), "EXPOSE")
        for port in value.split()
    }
    liveness = next(arg for arg in json.loads(parser().cmd) if arg.startswith("--liveness="))

    assert urlsplit(liveness.removeprefix("--liveness=")).port in exposed
    assert {8080, 9090} <= exposed


def test_runtime_environment_is_unbuffered_safe_path_and_writes_no_bytecode() -> None:
    envs = parser().envs

    assert {
        k: envs.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONSAFEPATH")
    } == {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONSAFEPATH": "1",
    }


def test_every_python_command_runs_with_pythonsafepath_where_operator_dir_exists() -> None:
    """A stage that copied operator/ into its working directory must not let
    `python -m ...` import it as the standard library's `operator`."""
    for stage in stages():
        copied_operator = False
        for instruction in stage:
            if instruction["instruction"] == "COPY" and "--from" not in instruction["value"]:
                copied_operator |= any(
                    w.rstrip("/") == "operator" for w in shlex.split(instruction["value"])[:-1]
                )
            if (
                instruction["instruction"] == "RUN"
                and copied_operator
                and "python" in instruction["value"]
            ):
                context = parser().context_structure[parser().structure.index(instruction)]
                assert context.envs.get("PYTHONSAFEPATH") == "1", instruction["content"]


def test_build_stage_builds_the_project_and_dependency_wheels_into_wheels_dir() -> None:
    runs = " ".join(of_kind(stages()[0], "RUN"))

    assert re.search(r"pip wheel .*--no-deps .*--wheel-dir /wheels \.(\s|$)", runs)
    assert re.search(
        r"pip wheel .*--wheel-dir /wheels -c constraints\.txt\s+"
        r"/wheels/seldon_promotion_operator-\*\.whl",
        runs,
    )


def test_build_stage_pins_every_dependency_with_the_constraints_file() -> None:
    copied = " ".join(of_kind(stages()[0], "COPY"))

    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert "constraints.txt" in copied
    assert not ignored & {"constraints.txt", "*.txt", "*"}


def test_final_stage_installs_only_the_built_wheels_without_a_cache() -> None:
    version = project()["version"]
    (install,) = pip_installs(final_stage())

    assert {"--no-index", "--no-cache-dir"} <= set(install)
    assert install[install.index("--find-links") + 1] == "/wheels"
    assert install[-1] in {f"seldon-promotion-operator=={v}" for v in (version, "${VERSION}")}


def test_final_stage_mounts_the_wheels_from_the_build_stage() -> None:
    (install_run,) = [run for run in of_kind(final_stage(), "RUN") if "pip install" in run]
    (mount,) = mounts(install_run)

    assert mount == {
        "type": "bind",
        "from": stage_name(stages()[0]),
        "source": "/wheels",
        "target": "/wheels",
    }


def test_final_stage_takes_nothing_from_the_build_context() -> None:
    stage = final_stage()
    for value in of_kind(stage, "COPY") + of_kind(stage, "ADD"):
        assert "--from=" in value, f"COPY/ADD of the source tree into the final stage: {value}"
    for run in of_kind(stage, "RUN"):
        for mount in mounts(run):
            assert mount.get("type") != "bind" or "from" in mount, f"binds the build context: {run}"


def test_final_stage_installs_no_compiler() -> None:
    for run in of_kind(final_stage(), "RUN"):
        for command in shell_commands(run):
            if command[0] in {"apt-get", "apt", "apk"} and {"install", "add"} & set(command):
                packages = {word.partition("=")[0] for word in command}  # gcc=12.2.0-14 -> gcc
                assert not COMPILERS & packages, f"installs a compiler: {run}"


def test_image_version_label_is_the_project_version() -> None:
    assert parser().args["VERSION"] == project()["version"]
    assert parser().labels["org.opencontainers.image.version"] == project()["version"]


def test_image_title_and_description_labels_are_the_projects() -> None:
    labels = parser().labels

    assert labels["org.opencontainers.image.title"] == project()["name"]
    assert labels["org.opencontainers.image.description"] == project()["description"]


@pytest.mark.parametrize(
    "path", [".venv/bin/python", ".git/HEAD", "tests/unit/test_dockerfile.py", "build/lib/x.py"]
)
def test_dockerignore_excludes_what_the_image_does_not_need(path: str) -> None:
    assert ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "seldon_promotion_operator.egg-info/PKG-INFO",
        "operator/__pycache__/runner.cpython-311.pyc",
        "operator/core/__pycache__/spec.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
    ],
)
def test_dockerignore_excludes_build_metadata_and_caches(path: str) -> None:
    assert ignored(path)


def test_dockerignore_keeps_everything_the_build_stage_copies() -> None:
    for copy in of_kind(stages()[0], "COPY"):
        for source in shlex.split(copy)[:-1]:
            path = ROOT / source
            files = [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            for file in files if path.is_dir() else [path]:
                assert not ignored(file.relative_to(ROOT).as_posix()), file
