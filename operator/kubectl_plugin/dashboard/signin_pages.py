"""The pages of sign-in mode: signing in, signed out, and the account bar (who is
signed in, and the sign-out button) put into every page's header. Pure."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from promotion_operator.kubectl_plugin.dashboard import csrf
from promotion_operator.kubectl_plugin.dashboard.pages import document

# Where each page's header ends: the account bar goes just before it.
HEADER_END = "</nav></header>"


def signin_page(message: str, next_path: str) -> str:
    """Ask the person to sign in (a link, not a form: the provider's page is another
    site, which the pages' ``form-action 'self'`` would not let a form reach)."""
    query = urlencode({"next": next_path})
    body = (
        "<h1>Sign in</h1>"
        f'<p role="status" id="signin-message">{escape(message)}</p>'
        f'<p><a class="signin" id="signin" href="/signin?{escape(query)}">'
        "Sign in with your identity provider</a></p>"
    )
    return document("Sign in", body, None)


def signed_out_page() -> str:
    body = (
        "<h1>Signed out</h1>"
        '<p role="status" id="signin-message">Your dashboard session has ended.</p>'
        '<p><a class="signin" id="signin" href="/signin">Sign in again</a></p>'
    )
    return document("Signed out", body, None)


def failed_page(message: str) -> str:
    body = (
        "<h1>Sign-in failed</h1>"
        f'<p class="error" role="alert">{escape(message)}</p>'
        '<p><a class="signin" id="signin" href="/signin">Try again</a></p>'
    )
    return document("Sign-in failed", body, None)


def account_bar(user: str, token: str) -> str:
    """Who is signed in, and the sign-out button (a POST carrying the session's CSRF
    token, so another site cannot sign a person out)."""
    return (
        f'<form class="account" method="post" action="/signout">'
        f'<span id="signed-in-user">{escape(user)}</span>'
        f'<input type="hidden" name="{csrf.FIELD}" value="{escape(token)}">'
        '<button type="submit" id="signout">Sign out</button></form>'
    )


def with_account_bar(page: str, user: str, token: str) -> str:
    """``page`` with the account bar at the end of its header."""
    return page.replace(HEADER_END, "</nav>" + account_bar(user, token) + "</header>", 1)
