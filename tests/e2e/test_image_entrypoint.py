"""The image's entrypoint, run from a virtualenv built the way the Dockerfile builds it.

No container engine runs here, so this module carries out the Dockerfile's own steps,
read from it with dockerfile-parse: the build stage's WORKDIR, COPYs and pip commands,
then the final stage's `python -m venv` and `pip install --no-index`, in a fresh
directory tree where the image paths /wheels and /opt/venv are mapped to directories of
their own. This machine's Python 3.11 (``sys.executable``) stands in for the base
image's ``python``. Then it runs ENTRYPOINT + CMD as the image would: from the final
WORKDIR, with the final stage's ENV and nothing of this machine's environment.

Slow (it downloads and builds the wheels), hence the ``e2e`` marker; it needs the
package index, not the local stack.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

# The image paths the Dockerfile's steps use; each is mapped under the test's root.
IMAGE_DIRS = ("/opt/venv", "/wheels")
_ALTERNATIVES = "|".join(map(re.escape, IMAGE_DIRS))
_IMAGE_PATH = re.compile(rf"(?<![\w./-])({_ALTERNATIVES})(?![\w.-])")
# How this machine reaches the package index; every other PIP_* setting is dropped,
# since the build stage has none (a PIP_FIND_LINKS here would add wheels to /wheels).
_PIP_TRANSPORT = {
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_EXTRA_INDEX_URL",
    "PIP_INDEX_URL",
    "PIP_PROXY",
    "PIP_RETRIES",
    "PIP_TRUSTED_HOST",
}
_RUN_FLAGS = re.compile(r"^(?:--\S+\s+)*")  # RUN --mount=... before the command
_STEP_TIMEOUT = 300
INVALID_SETTING = "promotion-operator: invalid setting: "


@dataclass(frozen=True)
class Image:
    """The final stage, laid out under ``rootfs``."""

    rootfs: Path
    venv: Path
    workdir: Path
    env: dict[str, str]  # the final stage's ENV (PATH with the venv first), and HOME
    argv: list[str]  # ENTRYPOINT + CMD


def _mapped(text: str, rootfs: Path) -> str:
    return _IMAGE_PATH.sub(lambda match: f"{rootfs}{match[1]}", text)


def _build_env() -> dict[str, str]:
    """This machine's environment without its Python and pip settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_")) or key in _PIP_TRANSPORT
    }


def _copy(value: str, workdir: Path) -> None:
    """A COPY from the build context (the repository), as Docker does it."""
    *sources, dest = shlex.split(value)
    assert not any(word.startswith("--") for word in sources), f"not a context COPY: {value}"
    target = workdir / dest
    for source in sources:
        path = ROOT / source
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]")
            shutil.copytree(path, target, ignore=ignore, dirs_exist_ok=True)
        elif dest.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _run(value: str, rootfs: Path, env: Mapping[str, str], cwd: Path) -> None:
    command = _mapped(_RUN_FLAGS.sub("", value), rootfs)
    result = subprocess.run(
        ["sh", "-c", command],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=_STEP_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"RUN {command}\n{result.stdout}\n{result.stderr}"


def _build(rootfs: Path, python_dir: Path) -> Image:
    """Carry out every stage's WORKDIR, COPY and RUN; return the final stage."""
    base_path = f"{python_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    parser = DockerfileParser(path=str(DOCKERFILE), parent_env={"PATH": base_path})
    workdir = rootfs
    entrypoint: list[str] = []
    for instruction, context in zip(parser.structure, parser.context_structure, strict=True):
        kind: str = instruction["instruction"]
        value: str = instruction["value"]
        env = {key: _mapped(v, rootfs) for key, v in {**context.args, **context.envs}.items()}
        if kind == "FROM":
            workdir, entrypoint = rootfs, []
        elif kind == "ENTRYPOINT":
            entrypoint = json.loads(value)
        elif kind == "WORKDIR":
            workdir = rootfs / value.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif kind == "COPY":
            _copy(value, workdir)
        elif kind == "RUN":
            _run(value, rootfs, {**_build_env(), **env}, workdir)
        elif kind in {"ADD", "ONBUILD", "SHELL"}:
            pytest.fail(f"{kind} is not carried out by this test: {instruction['content']}")

    final_envs: dict[str, str] = parser.envs
    image_env = {key: _mapped(v, rootfs) for key, v in final_envs.items()}
    image_env["HOME"] = str(workdir)
    return Image(
        rootfs=rootfs,
        venv=Path(_mapped("/opt/venv", rootfs)),
        workdir=workdir,
        env=image_env,
        argv=entrypoint + json.loads(parser.cmd),
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    top = tmp_path_factory.mktemp("image")
    python_dir = top / "base-python-bin"
    python_dir.mkdir()
    (python_dir / "python").symlink_to(sys.executable)
    return _build(top / "rootfs", python_dir)


def _entrypoint(image: Image, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args) or image.argv,
        cwd=image.workdir,
        env={**image.env, **extra_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_entrypoint_is_the_venvs_console_script(image: Image) -> None:
    found = shutil.which(image.argv[0], path=image.env["PATH"])

    assert found == str(image.venv / "bin" / "promotion-operator")


def test_package_is_a_real_install_in_the_venvs_site_packages(image: Image) -> None:
    code = (
        "import json, sysconfig, promotion_operator; "
        "print(json.dumps([promotion_operator.__file__, sysconfig.get_paths()['purelib']]))"
    )
    result = _entrypoint(image, str(image.venv / "bin" / "python"), "-c", code)
    assert result.returncode == 0, result.stderr
    module_file, purelib = map(Path, json.loads(result.stdout))

    assert purelib.is_relative_to(image.venv)
    assert module_file == purelib / "promotion_operator" / "__init__.py"
    assert not list(purelib.glob("__editable__*"))
    assert all(str(ROOT) not in pth.read_text() for pth in purelib.glob("*.pth"))


def test_installed_wheels_satisfy_every_dependency(image: Image) -> None:
    result = _entrypoint(image, str(image.venv / "bin" / "python"), "-m", "pip", "check")

    assert result.returncode == 0, result.stdout + result.stderr


def test_cmd_without_settings_exits_2_with_one_invalid_setting_line(image: Image) -> None:
    result = _entrypoint(image)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        INVALID_SETTING + "no Seldon Deploy instance configured: set SELDON_DEPLOY_URL "
        "(and SELDON_DEPLOY_CREDENTIALS_DIR), or list instances in the file named by "
        "PROMOTION_OPERATOR_SETTINGS_FILE"
    ]


def test_cmd_prints_one_invalid_setting_line_per_problem_and_no_traceback(image: Image) -> None:
    missing = image.rootfs / "missing-instances.yaml"
    result = _entrypoint(
        image, SELDON_DEPLOY_TIMEOUT="10", PROMOTION_OPERATOR_SETTINGS_FILE=str(missing)
    )
    lines = result.stderr.splitlines()

    assert result.returncode == 2
    assert len(lines) == 2 and all(line.startswith(INVALID_SETTING) for line in lines), lines
    assert "SELDON_DEPLOY_TIMEOUT is set but SELDON_DEPLOY_URL is not" in lines[0]
    assert f"PROMOTION_OPERATOR_SETTINGS_FILE: {missing} does not exist" in lines[1]
    assert "Traceback" not in result.stderr


def test_help_exits_0(image: Image) -> None:
    result = _entrypoint(image, image.argv[0], "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: promotion-operator")
    assert "--liveness URL" in result.stdout
