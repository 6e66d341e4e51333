"""The harness's secret scan knows client assertions (tests/harness/secrets.py)."""

from __future__ import annotations

import jwt

from tests.harness.secrets import JWT, secrets_in
from tests.harness.secrets import assertion_secrets as as_secrets
from tests.oidcstub.server import signing_key

ASSERTION = jwt.encode(
    {"iss": "https://127.0.0.1:6443", "sub": "system:serviceaccount:ns:sa", "aud": ["x"]},
    signing_key(),
    algorithm="RS256",
)


def test_the_whole_assertion_is_found_by_name() -> None:
    found = secrets_in({"the log": f"sending {ASSERTION} now"}, as_secrets("the token", ASSERTION))

    assert "the token in the log" in found
    assert "the token (its signature) in the log" in found


def test_its_signature_alone_is_found_where_the_token_pattern_sees_nothing() -> None:
    signature = ASSERTION.rsplit(".", 1)[1]
    text = f"assertion ended ...{signature} (cut)"

    assert JWT.search(text) is None
    assert secrets_in({"an event": text}, as_secrets("the token", ASSERTION)) == [
        "the token (its signature) in an event"
    ]


def test_nothing_is_reported_when_nothing_leaked() -> None:
    assert (
        secrets_in(
            {"status": "AuthenticationFailed: expired 300 s ago"}, as_secrets("t", ASSERTION)
        )
        == []
    )
