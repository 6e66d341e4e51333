"""A bearer-token ``authorization_function`` for MLflow's basic-auth app.

MLflow's authentication app (``mlflow server --app-name basic-auth``) asks one
function, named in its config file (``authorization_function = module:function``
in the ``[mlflow]`` section of the file ``MLFLOW_AUTH_CONFIG_PATH`` names), who sent
a request: the function returns a werkzeug ``Authorization`` whose ``username``
names a user of the app's user store, or a ``Response`` (a 401) that the app sends
instead. Everything after that is the app's own: whether the user is an admin, and
the permission checks of each call (READ, EDIT, ...) against its store.

This module is such a function. It takes ``Authorization: Bearer <token>`` when the
token is one of those in the JSON file that :data:`TOKENS_FILE_VARIABLE` names
(``{"<token>": "<user>"}``, written by the harness with fresh random tokens) and
stands for that token's user; anything else (no header, basic auth, an unknown
token) is answered 401. It is imported by the MLflow server, in MLflow's venv (the
directory holding it is on that server's ``PYTHONPATH``), never by the tests.
"""

from __future__ import annotations

import functools
import hmac
import json
import os

from flask import Response, make_response, request
from werkzeug.datastructures import Authorization

#: The environment variable naming the tokens file (its path only: the tokens stay
#: out of the server's environment and command line).
TOKENS_FILE_VARIABLE = "SPO_MLFLOW_BEARER_TOKENS_FILE"


@functools.cache
def _users_by_token() -> dict[str, str]:
    """The tokens and their users, read once per server process."""
    with open(os.environ[TOKENS_FILE_VARIABLE], encoding="utf-8") as file:
        users: dict[str, str] = json.load(file)
    return users


def authenticate_request_bearer_token() -> Authorization | Response:
    """The user whose token the request carries, or a 401."""
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sent:
        return _not_authenticated()
    user = _user_of(sent)
    if user is None:
        return _not_authenticated()
    # The user only: nothing downstream needs the token, so nothing can show it.
    return Authorization("bearer", {"username": user})


def _user_of(sent: str) -> str | None:
    """The user of the token sent, compared with every known one in constant time."""
    found = None
    for token, user in _users_by_token().items():
        if hmac.compare_digest(token.encode(), sent.encode()):
            found = user
    return found


def _not_authenticated() -> Response:
    answer = make_response("A bearer token this server knows is required.")
    answer.status_code = 401
    answer.headers["WWW-Authenticate"] = 'Bearer realm="mlflow"'
    return answer
