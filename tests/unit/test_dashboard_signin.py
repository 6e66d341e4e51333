"""Sign-in mode's pure parts: the settings it refuses, the identity it takes from an
ID token, the PKCE challenge, the sessions that end, and the pages' account bar."""

from __future__ import annotations

import datetime

import pytest

from promotion_operator.kubectl_plugin.dashboard import oidc, signin, signin_pages
from promotion_operator.kubectl_plugin.dashboard.sessions import Expiring
from promotion_operator.kubectl_plugin.kube import PluginError
from promotion_operator.kubectl_plugin.resource import ExitCode

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CLAIMS = {"email": "ana@example.com", "email_verified": True, "groups": ["release-managers"]}


def test_the_pkce_challenge_is_rfc_7636s_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636, appendix B
    assert oidc.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_each_attempt_has_its_own_state_nonce_and_verifier() -> None:
    one, two = oidc.new_attempt("/"), oidc.new_attempt("/")
    assert len({one.state, two.state, one.nonce, two.nonce, one.verifier, two.verifier}) == 6


def test_the_identity_is_the_prefixed_user_and_groups() -> None:
    identity = oidc.identity_of(CLAIMS, oidc.Claims())
    assert identity == oidc.Identity("oidc:ana@example.com", ("oidc:release-managers",))


def test_an_unverified_email_names_nobody() -> None:
    with pytest.raises(oidc.SignInError, match="not verified"):
        oidc.identity_of({**CLAIMS, "email_verified": False}, oidc.Claims())


def test_a_token_without_the_username_claim_is_refused() -> None:
    with pytest.raises(oidc.SignInError, match="'sub'"):
        oidc.identity_of(CLAIMS, oidc.Claims(username="sub"))


def test_the_dashboard_never_acts_as_a_system_identity() -> None:
    claims = {**CLAIMS, "groups": ["system:masters"]}
    with pytest.raises(oidc.SignInError, match="system:masters"):
        oidc.identity_of(claims, oidc.Claims(groups_prefix=""))


def test_groups_that_are_not_names_are_refused() -> None:
    with pytest.raises(oidc.SignInError, match="not a list"):
        oidc.identity_of({**CLAIMS, "groups": [1, 2]}, oidc.Claims())


@pytest.mark.parametrize(
    "issuer",
    ["ftp://idp.example", "http://idp.example/realms/x", "https://idp.example/?a=b", "idp"],
)
def test_an_issuer_that_is_not_https_is_refused(issuer: str) -> None:
    assert oidc.issuer_refusal(issuer) is not None


def test_an_https_issuer_or_a_loopback_one_is_taken() -> None:
    assert oidc.issuer_refusal("https://idp.example/realms/x") is None
    assert oidc.issuer_refusal("http://127.0.0.1:8080/realms/x") is None


def test_the_settings_take_an_https_public_url_and_an_address() -> None:
    config = signin.settings("https://promotions.example.com", "0.0.0.0:8080", 3600)
    assert config.public_url == "https://promotions.example.com/"
    assert config.redirect_uri == "https://promotions.example.com/signin/callback"
    assert (config.host, config.port, config.secure) == ("0.0.0.0", 8080, True)
    assert config.origins == frozenset({"https://promotions.example.com"})


@pytest.mark.parametrize(
    ("public_url", "listen", "ttl", "says"),
    [
        (None, "0.0.0.0:8080", 3600, "--public-url is needed"),
        ("http://promotions.example.com", "0.0.0.0:8080", 3600, "must be https"),
        ("https://promotions.example.com/dash", "0.0.0.0:8080", 3600, "root"),
        ("https://promotions.example.com", "8080", 3600, "--listen"),
        ("https://promotions.example.com", "0.0.0.0:http", 3600, "--listen"),
        ("https://promotions.example.com", "0.0.0.0:8080", 0, "--session-ttl"),
        ("https://promotions.example.com", "0.0.0.0:8080", 90000, "--session-ttl"),
    ],
)
def test_bad_settings_are_a_usage_error_saying_what_to_fix(
    public_url: str | None, listen: str, ttl: float, says: str
) -> None:
    with pytest.raises(PluginError) as refused:
        signin.settings(public_url, listen, ttl)
    assert says in refused.value.message
    assert refused.value.exit_code == ExitCode.NOT_FOUND


def test_a_session_is_found_until_its_end_and_then_handed_back_once() -> None:
    sessions: Expiring[str] = Expiring(datetime.timedelta(minutes=5), limit=10)
    key, entry = sessions.add("ana", T0)
    assert entry.ends == T0 + datetime.timedelta(minutes=5)
    assert sessions.find(key, T0 + datetime.timedelta(minutes=4)) is entry
    assert sessions.find(key, T0 + datetime.timedelta(minutes=5)) is None
    assert [e.value for e in sessions.expired(T0)] == ["ana"]
    assert sessions.expired(T0) == []


def test_an_unknown_or_missing_session_id_finds_nothing() -> None:
    sessions: Expiring[str] = Expiring(datetime.timedelta(minutes=5), limit=10)
    sessions.add("ana", T0)
    assert sessions.find("made-up", T0) is None
    assert sessions.find(None, T0) is None


def test_a_session_ended_by_sign_out_is_gone() -> None:
    sessions: Expiring[str] = Expiring(datetime.timedelta(minutes=5), limit=10)
    key, _ = sessions.add("ana", T0)
    assert sessions.pop(key) is not None
    assert sessions.find(key, T0) is None


def test_beyond_the_limit_the_oldest_session_goes() -> None:
    sessions: Expiring[str] = Expiring(datetime.timedelta(minutes=5), limit=2)
    first, _ = sessions.add("a", T0)
    sessions.add("b", T0)
    sessions.add("c", T0)
    assert sessions.find(first, T0) is None
    assert [e.value for e in sessions.expired(T0)] == ["a"]


@pytest.mark.parametrize("given", ["//evil.example/", "https://evil.example/", "/\\evil", "", None])
def test_after_sign_in_the_browser_goes_only_to_a_path_of_this_site(given: str | None) -> None:
    assert signin.local_path(given) == "/"


def test_after_sign_in_the_browser_goes_back_to_the_page_it_asked_for() -> None:
    assert signin.local_path("/promotions/ml/iris?x=1") == "/promotions/ml/iris?x=1"


def test_every_page_gets_the_account_bar_with_the_sessions_csrf_token() -> None:
    page = signin_pages.signin_page("hello", "/")
    shown = signin_pages.with_account_bar(page, "oidc:<ana>", "tok-123")
    assert 'value="tok-123"' in shown
    assert "oidc:&lt;ana&gt;" in shown
    assert shown.count('action="/signout"') == 1


def test_the_user_namespaces_are_a_checked_list() -> None:
    config = signin.settings("https://p.example", "0.0.0.0:8080", 60, " team-a,team-b ,")
    assert config.user_namespaces == ("team-a", "team-b")
    with pytest.raises(PluginError, match="Team_A"):
        signin.settings("https://p.example", "0.0.0.0:8080", 60, "Team_A")
