"""Where the image's Debian base comes from: the mirror named by this machine's apt
sources, read at run time (the harness names no host of its own)."""

from __future__ import annotations

from pathlib import Path

from tests.harness.container_base import SUITE, configured_mirror

DEB822 = f"""\
Types: deb
# a comment naming another archive
URIs: http://mirror.example.org/debian
Suites: {SUITE} {SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: {SUITE}-security
Components: main
"""


def _apt(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_mirror_is_read_from_a_deb822_sources_file(tmp_path: Path) -> None:
    apt = _apt(tmp_path, {"sources.list.d/debian.sources": DEB822})

    assert configured_mirror(apt) == "http://mirror.example.org/debian"


def test_mirror_is_read_from_a_one_line_list_with_options(tmp_path: Path) -> None:
    apt = _apt(tmp_path, {"sources.list": (
        "# deb http://old.example.org/debian bookworm main\n"
        f"deb-src http://src.example.org/debian {SUITE} main\n"
        f"deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.org/debian {SUITE} main contrib\n"
    )})  # fmt: skip

    assert configured_mirror(apt) == "http://mirror.example.org/debian"


def test_sources_of_other_suites_or_without_main_are_not_used(tmp_path: Path) -> None:
    apt = _apt(tmp_path, {
        "sources.list": f"deb http://a.example.org/debian trixie main\n"
                        f"deb http://b.example.org/debian {SUITE} contrib\n",
        "sources.list.d/off.sources": DEB822.replace("Types: deb\n", "Types: deb\nEnabled: no\n"),
    })  # fmt: skip

    assert configured_mirror(apt) is None
