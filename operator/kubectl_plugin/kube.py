"""The Kubernetes API as the plugin uses it, with the user's kubeconfig only.

Every failure becomes a :class:`PluginError` with one line for a person (the
API server's own message where there is one) and the exit code; nothing here
prints a traceback. A write that lost a race on ``resourceVersion`` is a
:class:`ObjectChanged`, which the caller answers by reading again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from promotion_operator.kubectl_plugin.resource import (
    GROUP,
    KINDS,
    PLURAL,
    VERSION,
    ExitCode,
)

# The client's untyped functions, typed as what the plugin relies on.
_list_contexts: Callable[..., tuple[list[dict[str, Any]] | None, dict[str, Any] | None]] = (
    config.list_kube_config_contexts
)
_new_client: Callable[..., Any] = config.new_client_from_config
_lines: Callable[[Any], Iterator[str]] = iter_resp_lines
_load_in_cluster: Callable[..., None] = config.load_incluster_config

# How long a connection may take, and how long a read may wait for an answer.
_CONNECT_TIMEOUT = 10.0
_READ_TIMEOUT = 30.0
# A watch read waits this much longer than the server's own timeout before giving up.
_WATCH_GRACE = 15.0


class PluginError(Exception):
    """A failure to tell the user in one line, with the exit code to end with."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Unreachable(PluginError):
    """The API server could not be reached (or the connection broke)."""


class ObjectChanged(Exception):
    """A write's ``resourceVersion`` was not the object's any more (HTTP 409)."""


class Expired(Exception):
    """A watch's ``resourceVersion`` is too old (HTTP 410 Gone): read the object again."""


@dataclass(frozen=True)
class KubeConfig:
    """What the kubeconfig says: the client, the context's namespace, the server, and
    how long a request may wait for its answer (``--request-timeout``; None: no limit)."""

    api_client: Any
    namespace: str
    server: str
    read_timeout: float | None = _READ_TIMEOUT


@dataclass(frozen=True)
class Impersonation:
    """``--as`` and ``--as-group``: the user (and groups) the API server acts as, if the
    kubeconfig's own user may impersonate them (the ``Impersonate-*`` headers)."""

    user: str
    groups: tuple[str, ...] = ()


def load(
    kubeconfig: str | None,
    context: str | None,
    *,
    impersonate: Impersonation | None = None,
    request_timeout: float | None = _READ_TIMEOUT,
) -> KubeConfig:
    """The client for ``kubeconfig`` (default: ``KUBECONFIG``, else ``~/.kube/config``)
    and ``context`` (default: the current one), and that context's namespace."""
    try:
        contexts, current = _list_contexts(config_file=kubeconfig)
        api_client = _new_client(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as error:
        raise PluginError(f"error: invalid kubeconfig: {_one_line(str(error))}") from None
    chosen = current
    if context is not None:
        chosen = next((c for c in contexts or () if c.get("name") == context), None)
    namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    if impersonate is not None:
        _send_impersonation(api_client, impersonate)
    return KubeConfig(
        api_client, str(namespace), str(api_client.configuration.host), request_timeout
    )


# Where a Pod's ServiceAccount credentials are mounted.
_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def load_in_cluster(
    *,
    impersonate: Impersonation | None = None,
    request_timeout: float | None = _READ_TIMEOUT,
) -> KubeConfig:
    """The client of the Pod's own ServiceAccount (its mounted token, re-read as the
    kubelet rotates it), and the Pod's namespace."""
    configuration = client.Configuration()
    try:
        _load_in_cluster(client_configuration=configuration)
        with open(f"{_SERVICE_ACCOUNT_DIR}/namespace", encoding="utf-8") as file:
            namespace = file.read().strip() or "default"
    except (config.ConfigException, OSError) as error:
        raise PluginError(
            f"error: not running in a Pod with a ServiceAccount ({_one_line(str(error))}): "
            "give --kubeconfig",
            ExitCode.NOT_FOUND,
        ) from None
    api_client = client.ApiClient(configuration)
    if impersonate is not None:
        _send_impersonation(api_client, impersonate)
    return KubeConfig(api_client, namespace, str(configuration.host), request_timeout)


def _send_impersonation(api_client: Any, who: Impersonation) -> None:
    """Add the ``Impersonate-User`` and one ``Impersonate-Group`` per group to every
    request, as kubectl does. The client's default headers are a plain dict, which
    cannot hold a header twice, so the headers go in at its REST layer instead."""
    rest = api_client.rest_client
    send = rest.request

    def request(method: str, url: str, headers: Any = None, **kwargs: Any) -> Any:
        merged = urllib3.HTTPHeaderDict(headers or {})
        merged["Impersonate-User"] = who.user
        for group in who.groups:
            merged.add("Impersonate-Group", group)
        return send(method, url, headers=merged, **kwargs)

    rest.request = request


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _status(error: ApiException) -> Mapping[str, Any]:
    """The API server's Status object in an error response (empty if there is none)."""
    body = error.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str):
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, Mapping) else {}


def api_error(error: ApiException, name: str | None = None, plural: str = PLURAL) -> PluginError:
    """One line as kubectl writes it: ``Error from server (Reason): message``."""
    status = _status(error)
    reason = str(status.get("reason") or error.reason or "Unknown")
    message = _one_line(str(status.get("message") or error.body or error.reason or "")).strip()
    code = int(status.get("code") or error.status or 0)
    if code == 404:
        details = status.get("details")
        if name is not None and not (isinstance(details, Mapping) and details.get("name")):
            # The resource type itself is unknown, not the object.
            kind = KINDS.get(plural, plural)
            message += f" ({plural}.{GROUP} is not served: is the {kind} CRD installed?)"
        return PluginError(f"Error from server (NotFound): {message}", ExitCode.NOT_FOUND)
    return PluginError(f"Error from server ({reason}): {message}")


def _cause(error: BaseException) -> str:
    """The innermost useful words of a connection failure."""
    reason: Any = error
    while isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    text = _one_line(str(reason))
    found = re.search(r"\[Errno -?\d+\][^'\")]*|\[SSL[^\]]*\][^'\")]*", text)
    return found.group(0).strip() if found else text


class Kube:
    """ModelPromotions through the API server, for one kubeconfig."""

    def __init__(self, loaded: KubeConfig) -> None:
        self.server = loaded.server
        self.default_namespace = loaded.namespace
        self._client = loaded.api_client
        self._custom = client.CustomObjectsApi(loaded.api_client)
        self._auth = client.AuthenticationV1Api(loaded.api_client)
        self._core = client.CoreV1Api(loaded.api_client)
        # urllib3's (connect, read); read None waits as long as the server takes.
        self._timeout: Any = (_CONNECT_TIMEOUT, loaded.read_timeout)

    def _unreachable(self, error: BaseException) -> NoReturn:
        raise Unreachable(
            f"error: cannot reach the Kubernetes API server at {self.server}: {_cause(error)}"
        ) from None

    def get(self, namespace: str, name: str, *, plural: str = PLURAL) -> dict[str, Any]:
        """The object (``PluginError`` with exit code 5 when there is none); a
        ModelPromotion, or of ``plural`` (``promotionpaths``)."""
        try:
            body = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name,
                _request_timeout=self._timeout,
            )  # fmt: skip
        except ApiException as error:
            raise api_error(error, name, plural) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._unreachable(error)
        return cast(dict[str, Any], body)

    def list(self, namespace: str | None, *, plural: str = PLURAL) -> dict[str, Any]:
        """The ModelPromotions (or objects of ``plural``) of ``namespace``, or of every
        namespace (None)."""
        timeout = self._timeout
        try:
            if namespace is None:
                body = self._custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=timeout
                )
            else:
                body = self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, _request_timeout=timeout
                )
        except ApiException as error:
            raise api_error(error, "") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._unreachable(error)
        return cast(dict[str, Any], body)

    def annotate(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        annotations: Mapping[str, str | None],
        *,
        plural: str = PLURAL,
    ) -> dict[str, Any]:
        """A JSON merge patch of ``annotations`` (None removes one), only if the object
        is still at ``resource_version``; :class:`ObjectChanged` if it is not."""
        return self.patch(
            namespace,
            name,
            resource_version,
            {"metadata": {"annotations": dict(annotations)}},
            plural=plural,
        )

    def patch(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        patch: Mapping[str, Any],
        *,
        plural: str = PLURAL,
    ) -> dict[str, Any]:
        """The JSON merge patch ``patch`` (None removes a field), only if the object is
        still at ``resource_version``; :class:`ObjectChanged` if it is not."""
        metadata = {**dict(patch.get("metadata") or {}), "resourceVersion": resource_version}
        patch = {**patch, "metadata": metadata}
        try:
            body = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, patch,
                field_manager="kubectl-promotion",
                _content_type="application/merge-patch+json",
                _request_timeout=self._timeout,
            )  # fmt: skip
        except ApiException as error:
            if error.status == 409:
                raise ObjectChanged() from None
            raise api_error(error, name, plural) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._unreachable(error)
        return cast(dict[str, Any], body)

    def username(self) -> str:
        """The caller's own user name, as the API server authenticated it
        (a SelfSubjectReview: it needs no permission)."""
        review = client.V1SelfSubjectReview(
            api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
        )
        try:
            answer = self._auth.create_self_subject_review(
                body=review, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status == 404:
                raise PluginError(
                    "error: the API server does not serve SelfSubjectReview "
                    "(authentication.k8s.io/v1, Kubernetes 1.28 or later), so it cannot "
                    "say who you are"
                ) from None
            raise api_error(error) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._unreachable(error)
        user = getattr(getattr(answer, "status", None), "user_info", None)
        username = getattr(user, "username", None)
        if not isinstance(username, str) or not username:
            raise PluginError("error: the API server did not say who you are (SelfSubjectReview)")
        return username

    def watch(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        timeout_seconds: int,
        *,
        plural: str = PLURAL,
    ) -> Iterator[dict[str, Any]]:
        """Events of the one object after ``resource_version``, for at most
        ``timeout_seconds`` (then the server ends the stream and the caller resumes).

        Raises :class:`Expired` when the version is too old, :class:`Unreachable`
        when the connection fails, :class:`PluginError` when the server refuses.
        """
        return self.watch_list(
            namespace,
            resource_version,
            timeout_seconds,
            f"metadata.name={name}",
            name,
            plural=plural,
        )

    def watch_list(
        self,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
        field_selector: str | None = None,
        name: str | None = "",
        *,
        plural: str = PLURAL,
    ) -> Iterator[dict[str, Any]]:
        """Events of the ModelPromotions (or objects of ``plural``) of ``namespace``
        (every namespace: None) after ``resource_version``, as :meth:`watch`."""
        options: dict[str, Any] = {
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
            "watch": True,
            "_preload_content": False,
            "_request_timeout": (_CONNECT_TIMEOUT, timeout_seconds + _WATCH_GRACE),
        }
        if field_selector is not None:
            options["field_selector"] = field_selector
        try:
            response: Any = (
                self._custom.list_cluster_custom_object(GROUP, VERSION, plural, **options)
                if namespace is None
                else self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, **options
                )
            )
        except ApiException as error:
            if error.status == 410:
                raise Expired() from None
            raise api_error(error, name) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._unreachable(error)
        try:
            for line in _lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise Expired()
                    raise api_error(
                        ApiException(status=status.get("code"), body=json.dumps(status)), name
                    )
                yield event
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._unreachable(error)
        except ValueError as error:
            raise Unreachable(f"error: a broken watch event from {self.server}: {error}") from None
        finally:
            response.close()
            response.release_conn()

    def events(self, namespace: str, name: str) -> Sequence[dict[str, Any]]:
        """The Events about the ModelPromotion ``namespace/name`` (core/v1, what
        ``kubectl describe`` shows), in the order the API server lists them."""
        try:
            body: Any = self._core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=ModelPromotion,involvedObject.name={name}",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        except ApiException as error:
            raise api_error(error) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            self._unreachable(error)
        try:
            listed = json.loads(body.data)
        except ValueError:
            return []
        items = listed.get("items") if isinstance(listed, dict) else None
        return [item for item in items or () if isinstance(item, dict)]


@dataclass(frozen=True)
class OfKind:
    """Get and watch objects of one kind (its ``plural``) through ``kube``: what a
    watch of a PromotionPath needs (:class:`~.watching.Api`)."""

    kube: Kube
    plural: str

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self.kube.get(namespace, name, plural=self.plural)

    def watch(
        self, namespace: str, name: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        return self.kube.watch(
            namespace, name, resource_version, timeout_seconds, plural=self.plural
        )
