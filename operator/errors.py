"""The failures the operator can meet, sorted as docs/contract.md section 8 sorts them.

Every error carries a ``reason`` (the condition reason a person reads in
``kubectl get mp``) and says whether retrying can help. Messages never contain a
secret or a token: build them from names, URLs without credentials and status
codes only.
"""

from __future__ import annotations


class PromotionError(Exception):
    """Base of every failure the core knows how to report."""

    reason = "Error"
    retryable = False

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        # Seconds the server asked us to wait (HTTP Retry-After), if it said.
        self.retry_after = retry_after


class SettingsError(PromotionError):
    """The operator's settings or a credentials directory are invalid."""

    reason = "InvalidSettings"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class AuthenticationFailed(PromotionError):
    """The identity provider refused the credentials, or Seldon Deploy refused the token."""

    reason = "AuthenticationFailed"
    # Credentials get fixed by rotating the Secret; retrying (slowly) picks that up.
    retryable = True


class IdentityProviderUnavailable(PromotionError):
    """The identity provider could not be reached or answered with a server error."""

    reason = "IdentityProviderUnavailable"
    retryable = True


class SeldonDeployUnavailable(PromotionError):
    """Seldon Deploy could not be reached, timed out, throttled (429) or failed (5xx)."""

    reason = "SeldonDeployUnavailable"
    retryable = True


class Conflict(PromotionError):
    """Seldon Deploy refused a write because of a concurrent change (409)."""

    reason = "Conflict"
    retryable = True


class Forbidden(PromotionError):
    """The token is valid but has no permission on the namespace (403)."""

    reason = "Forbidden"


class NotFound(PromotionError):
    """The deployment does not exist (404)."""

    reason = "NotFound"


class Invalid(PromotionError):
    """Seldon Deploy refused the deployment as invalid (400/422)."""

    reason = "Invalid"


class UnexpectedResponse(PromotionError):
    """Seldon Deploy answered with something that is not the documented shape."""

    reason = "UnexpectedResponse"
    retryable = True


class MetricsUnavailable(PromotionError):
    """Prometheus could not be reached, timed out, throttled (429) or failed (5xx)."""

    reason = "MetricsUnavailable"
    retryable = True


class InvalidQuery(PromotionError):
    """Prometheus refused an analysis query as malformed PromQL (400, ``bad_data``).

    The message carries Prometheus' own explanation: the query is fixed in the
    ModelPromotion, and asking again cannot help.
    """

    reason = "Invalid"


class AnalysisInconclusive(PromotionError):
    """Prometheus answered, but not with one number (no data, several series, NaN, ...).

    A measurement that proves nothing: retried with backoff; at the run's deadline
    the canary is rolled back, never promoted on missing evidence.
    """

    reason = "AnalysisInconclusive"
    retryable = True


class NotLeading(Exception):
    """This replica no longer holds the Lease long enough to finish a write.

    Not a failure of the run (so not a :class:`PromotionError`): the pass stops
    unrecorded, and the replica that leads now goes on with the run.
    """
