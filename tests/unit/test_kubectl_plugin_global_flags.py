"""kubectl's global flags: ``--as``, ``--as-group``, ``--context``, ``--kubeconfig`` and
``--request-timeout``, accepted before and after the command, and the impersonation
headers they make, as a real HTTP server receives them."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from promotion_operator.kubectl_plugin import cli
from promotion_operator.kubectl_plugin.kube import Impersonation, Kube, PluginError, load


def test_the_global_flags_parse_before_and_after_the_command() -> None:
    before = cli.build_parser().parse_args(
        ["--as", "alice", "--as-group", "a", "--as-group", "b", "get", "iris"]
    )
    after = cli.build_parser().parse_args(
        ["get", "iris", "--as=alice", "--as-group=a", "--as-group=b", "--request-timeout=5s"]
    )
    assert (before.as_user, before.as_groups) == ("alice", ["a", "b"])
    assert (after.as_user, after.as_groups, after.request_timeout) == ("alice", ["a", "b"], 5.0)


def test_a_request_timeout_of_zero_means_no_limit() -> None:
    assert cli.parse_request_timeout("0") is None
    assert cli.parse_request_timeout("1m") == 60.0
    assert cli.parse_request_timeout("90") == 90.0


def test_the_dashboard_takes_the_global_flags_and_its_own() -> None:
    args = cli.build_parser().parse_args(
        ["dashboard", "--as", "bob", "--read-only", "--port", "8080", "--no-browser"]
    )
    assert (args.as_user, args.read_only, args.port, args.no_browser) == (
        "bob",
        True,
        8080,
        True,
    )
    assert args.run is cli.cmd_dashboard


def test_groups_without_a_user_are_refused_as_kubectl_refuses_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--as-group", "admins", "list"]) == 5
    assert "requesting groups without impersonating a user" in capsys.readouterr().err


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str | None, list[str]]]] = []

    def do_GET(self) -> None:
        self.seen.append(
            (self.headers.get("Impersonate-User"), self.headers.get_all("Impersonate-Group") or [])
        )
        body = json.dumps({"kind": "ModelPromotion", "metadata": {"name": "iris"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _kubeconfig(path: Path, server: str) -> str:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "main",
            }
        )
    )
    return str(path)


def test_as_and_as_group_send_one_header_per_group(api_server: str, tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", api_server)
    who = Impersonation("alice", ("release-managers", "ml-leads"))
    Kube(load(config, None, impersonate=who)).get("ml", "iris")
    assert _Recorder.seen == [("alice", ["release-managers", "ml-leads"])]


def test_without_as_nothing_is_impersonated(api_server: str, tmp_path: Path) -> None:
    Kube(load(_kubeconfig(tmp_path / "config", api_server), None)).get("ml", "iris")
    assert _Recorder.seen == [(None, [])]


def test_the_session_passes_the_flags_to_the_client(api_server: str, tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", api_server)
    args = cli.build_parser().parse_args(
        ["get", "iris", "--kubeconfig", config, "--as", "bob", "--as-group", "g"]
    )
    cli.Session(args).kube.get("ml", "iris")
    assert _Recorder.seen == [("bob", ["g"])]


def test_an_unanswered_request_times_out_after_the_request_timeout(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        config = _kubeconfig(tmp_path / "config", f"http://127.0.0.1:{silent.getsockname()[1]}")
        kube = Kube(load(config, None, request_timeout=0.5))
        with pytest.raises(PluginError, match="cannot reach the Kubernetes API server"):
            kube.get("ml", "iris")
    finally:
        silent.close()


def test_the_dashboards_prometheus_url_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    assert cli.build_parser().parse_args(["dashboard"]).prometheus_url is None
    flag = ["dashboard", "--prometheus-url", "http://127.0.0.1:9090"]
    assert cli.build_parser().parse_args(flag).prometheus_url == "http://127.0.0.1:9090"
    monkeypatch.setenv("PROMETHEUS_URL", "http://prometheus:9090")
    assert cli.build_parser().parse_args(["dashboard"]).prometheus_url == "http://prometheus:9090"
