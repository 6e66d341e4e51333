"""Cross-site requests and DNS rebinding are refused before anything is done."""

from __future__ import annotations

from promotion_operator.kubectl_plugin.dashboard import csrf

PORT = 8765
HOSTS = csrf.allowed_hosts(PORT)
ORIGINS = csrf.origins(HOSTS)


def test_a_post_with_the_servers_token_and_origin_passes() -> None:
    token = csrf.new_token()
    assert csrf.post_refusal(token, token, f"http://127.0.0.1:{PORT}", ORIGINS) is None
    assert csrf.post_refusal(token, token, None, ORIGINS) is None


def test_a_post_without_a_token_is_refused() -> None:
    refusal = csrf.post_refusal(csrf.new_token(), None, None, ORIGINS)
    assert refusal is not None and "CSRF token" in refusal


def test_a_post_with_another_token_is_refused() -> None:
    assert csrf.post_refusal(csrf.new_token(), csrf.new_token(), None, ORIGINS) is not None


def test_a_post_from_another_origin_is_refused_even_with_the_token() -> None:
    token = csrf.new_token()
    refusal = csrf.post_refusal(token, token, "https://evil.example", ORIGINS)
    assert refusal is not None and "another site" in refusal


def test_tokens_differ_from_server_to_server() -> None:
    assert len({csrf.new_token() for _ in range(20)}) == 20


def test_only_loopback_host_names_on_our_port_are_answered() -> None:
    assert csrf.host_refusal(f"127.0.0.1:{PORT}", HOSTS) is None
    assert csrf.host_refusal(f"localhost:{PORT}", HOSTS) is None
    assert csrf.host_refusal(f"attacker.example:{PORT}", HOSTS) is not None
    assert csrf.host_refusal("127.0.0.1:1", HOSTS) is not None
    assert csrf.host_refusal(None, HOSTS) is not None


def test_an_opaque_origin_is_refused() -> None:
    token = csrf.new_token()
    assert csrf.post_refusal(token, token, "null", ORIGINS) is not None
