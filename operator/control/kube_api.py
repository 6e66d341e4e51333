"""The Kubernetes API calls the operator makes itself: the ModelPromotions' list and
watch, status patches, Events, Leases, and the PromotionPolicies a run's first write
must respect.

Writing is done here, so that one pass costs at most one status write (Kopf
would add its own bookkeeping patches); the list and watch feed the handlers'
watch loop. Calls are blocking and run in the controller's worker threads (the
watch in a thread of its own). Failures are
:class:`KubeError` (:class:`ObjectChanged` for a lost race), with the API server's
own one-line message: never a traceback, never a credential.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

from promotion_operator.config.replica import THIS_REPLICA
from promotion_operator.core.conditions import Event

log = logging.getLogger(__name__)

GROUP = "deploy.mlops.dev"
VERSION = "v1alpha1"
PLURAL = "modelpromotions"
KIND = "ModelPromotion"
POLICIES = "promotionpolicies"  # PromotionPolicy, in the same group and version
PATH_PLURAL = "promotionpaths"
PATH_KIND = "PromotionPath"
#: The component named as the source of the Events the operator posts.
COMPONENT = "promotion-operator"

# The client's untyped functions, typed as what is relied on.
_incluster: Callable[..., None] = config.load_incluster_config
_kubeconfig: Callable[..., None] = config.load_kube_config

_MERGE_PATCH = "application/merge-patch+json"
_TIMEOUT = (10.0, 30.0)  # connect, read
#: Throttled answers (429, as API Priority and Fairness gives) retried inside one call,
#: as client-go does: the request was refused before it was carried out, so sending
#: it again cannot do it twice.
THROTTLED_RETRIES = 3
#: The wait before a retry when a throttled answer names none (APF always does).
THROTTLED_WAIT = 1.0


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ObjectChanged(KubeError):
    """The object changed since it was read (HTTP 409): read it again."""


@dataclass(frozen=True)
class ObjectRef:
    """A ModelPromotion, as the API addresses it."""

    namespace: str
    name: str
    uid: str


def connect() -> client.ApiClient:
    """A client with the pod's ServiceAccount, or else the kubeconfig (as Kopf logs in),
    that names this replica in its User-Agent."""
    configuration = client.Configuration()
    try:
        _incluster(client_configuration=configuration)
    except config.ConfigException:
        _kubeconfig(client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    api_client.user_agent = THIS_REPLICA.user_agent
    return api_client


class KubeApi:
    """The few API calls the controller needs, over one pooled client (thread-safe)."""

    def __init__(self, api_client: client.ApiClient, *, identity: str) -> None:
        self._client: Any = api_client  # untyped library
        self.identity = identity

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    # -- ModelPromotions ---------------------------------------------------------------------

    def get_promotion(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The ModelPromotion as it is now, or None if it is gone (or is another object)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{PLURAL}/{ref.name}"
        try:
            body = self._call("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return body if body.get("metadata", {}).get("uid") == ref.uid else None

    def list_promotions(
        self, namespace: str | None, *, limit: int, continue_token: str = ""
    ) -> dict[str, Any]:
        """One page of at most ``limit`` ModelPromotions (of every namespace with None);
        its ``metadata.continue`` names the next page (a 410 once that has expired)."""
        query = {"limit": str(limit), **({"continue": continue_token} if continue_token else {})}
        return self._call("GET", f"{_promotions_path(namespace)}?{urllib.parse.urlencode(query)}")

    def watch_promotions(
        self, namespace: str | None, resource_version: str, *, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """The watch events (``type``, ``object``) after ``resource_version``, bookmarks
        included, until the server ends the watch after ``timeout_seconds``."""
        return self._watch(_promotions_path(namespace), resource_version, timeout_seconds)

    def create_promotion(self, body: Mapping[str, Any]) -> bool:
        """Create the ModelPromotion ``body``; False if one of its name is already there
        (created by an earlier pass: creating is idempotent)."""
        namespace = body["metadata"]["namespace"]
        try:
            self._call("POST", _promotions_path(namespace), body)
        except ObjectChanged:  # 409 AlreadyExists
            return False
        return True

    def list_owned_promotions(self, namespace: str, label: str, value: str) -> list[dict[str, Any]]:
        """The ModelPromotions of ``namespace`` labelled ``label=value``."""
        query = urllib.parse.urlencode({"labelSelector": f"{label}={value}"})
        answer = self._call("GET", f"{_promotions_path(namespace)}?{query}")
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    # -- PromotionPaths ------------------------------------------------------------------------

    def list_paths(
        self, namespace: str | None, *, limit: int, continue_token: str = ""
    ) -> dict[str, Any]:
        """One page of PromotionPaths (see :meth:`list_promotions`)."""
        query = {"limit": str(limit), **({"continue": continue_token} if continue_token else {})}
        path = f"{_collection(PATH_PLURAL, namespace)}?{urllib.parse.urlencode(query)}"
        return self._call("GET", path)

    def watch_paths(
        self, namespace: str | None, resource_version: str, *, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """The PromotionPaths' watch events (see :meth:`watch_promotions`)."""
        return self._watch(_collection(PATH_PLURAL, namespace), resource_version, timeout_seconds)

    def patch_path_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``status`` into the PromotionPath's status (only this operator writes it;
        the uid precondition keeps it off a path of the same name made since)."""
        path = f"{_collection(PATH_PLURAL, ref.namespace)}/{ref.name}/status"
        body = {"metadata": {"uid": ref.uid}, "status": dict(status)}
        return self._call("PATCH", path, body, content_type=_MERGE_PATCH)

    def patch_promotion(
        self,
        ref: ObjectRef,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None,
        subresource: str = "",
    ) -> dict[str, Any]:
        """Merge ``patch`` into the object (or its ``status`` subresource), only if it is
        still at ``resource_version`` (None: whatever its version, if it is still the
        object of ``ref.uid``); the object as written. :class:`ObjectChanged` if not."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{PLURAL}/{ref.name}"
        if subresource:
            path += f"/{subresource}"
        body = {**patch, "metadata": {**patch.get("metadata", {}), "uid": ref.uid}}
        if resource_version is not None:
            body["metadata"]["resourceVersion"] = resource_version
        return self._call("PATCH", path, body, content_type=_MERGE_PATCH)

    def post_event(self, ref: ObjectRef, event: Event) -> None:
        """Post ``event`` on the ModelPromotion; a failure is logged, never raised."""
        now = datetime.datetime.now(datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"namespace": ref.namespace, "generateName": f"{ref.name}."},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": ref.uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.identity[:128],
            "action": event.reason,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "count": 1,
        }
        try:
            self._call("POST", f"/api/v1/namespaces/{ref.namespace}/events", body)
        except KubeError as error:
            log.warning("could not post the %s Event on %s: %s", event.reason, ref.name, error)

    # -- PromotionPolicies ---------------------------------------------------------------------

    def list_policies(self, namespace: str) -> list[dict[str, Any]]:
        """The PromotionPolicies of ``namespace`` (none if the kind is not installed)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{POLICIES}"
        try:
            body = self._call("GET", path)
        except KubeError as error:
            if error.status == 404:
                return []  # the CRD is not installed: there can be no policy
            raise
        items = body.get("items")
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    # -- Leases --------------------------------------------------------------------------------

    def get_lease(
        self, namespace: str, name: str, *, timeout: float = _TIMEOUT[1]
    ) -> dict[str, Any] | None:
        """The Lease, or None if there is none."""
        try:
            return self._call("GET", _lease_path(namespace, name), timeout=timeout)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def create_lease(
        self,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        *,
        timeout: float = _TIMEOUT[1],
    ) -> dict[str, Any]:
        """Create the Lease; :class:`ObjectChanged` if someone else just did."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"namespace": namespace, "name": name},
            "spec": dict(spec),
        }
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        return self._call("POST", path, body, timeout=timeout)

    def replace_lease(
        self, lease: Mapping[str, Any], spec: Mapping[str, Any], *, timeout: float = _TIMEOUT[1]
    ) -> dict[str, Any]:
        """Write ``spec`` into ``lease`` as it was read; :class:`ObjectChanged` if it changed."""
        metadata = lease["metadata"]
        body = {**lease, "spec": dict(spec)}
        path = _lease_path(metadata["namespace"], metadata["name"])
        return self._call("PUT", path, body, timeout=timeout)

    def _watch(
        self, collection: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        path = f"{collection}?{urllib.parse.urlencode(query)}"
        # The read timeout outlasts the server's: a quiet watch is not a dead one.
        response = self._send("GET", path, None, "application/json", timeout_seconds + 30.0)
        stream: Any = response.response  # urllib3's, not read ahead (preload_content=False)
        try:
            if not 200 <= response.status <= 299:
                raise _error("GET", path, response.status, stream.data)
            for line in stream:
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        except KubeError:
            raise
        except Exception as error:  # reset, timed out, cut mid-line
            raise KubeError(f"watch {path}: {type(error).__name__}") from None
        finally:
            stream.release_conn()

    # -- one call ------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = _TIMEOUT[1],
    ) -> dict[str, Any]:
        # A throttled call is sent again after the server's Retry-After, as long as the
        # call as a whole stays within ``timeout`` (a Lease renewal keeps its deadline).
        deadline = time.monotonic() + timeout
        for retry in range(THROTTLED_RETRIES + 1):
            response = self._send(method, path, body, content_type, timeout)
            try:
                data = response.read()
            except Exception as error:  # reset, timed out: no answer
                raise KubeError(f"{method} {path}: {type(error).__name__}") from None
            wait = _retry_after(response)
            if response.status != 429 or retry == THROTTLED_RETRIES:
                break
            if time.monotonic() + wait >= deadline:
                break
            log.info("%s %s was throttled (429); again in %.0f s", method, path, wait)
            time.sleep(wait)
        if not 200 <= response.status <= 299:
            raise _error(method, path, response.status, data)
        answer = json.loads(data) if data else {}
        return answer if isinstance(answer, dict) else {}

    def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        content_type: str,
        timeout: float,
    ) -> Any:
        """Send one request; the response, its body not read yet."""
        try:
            request = self._client.param_serialize(
                method,
                path,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            limits = (min(_TIMEOUT[0], timeout), timeout)
            return self._client.call_api(*request, _request_timeout=limits)
        except Exception as error:  # refused, reset, timed out: no answer
            raise KubeError(f"{method} {path}: {type(error).__name__}") from None


def _retry_after(response: Any) -> float:
    """The seconds a throttled answer asks to wait (delta-seconds only, as the
    apiserver sends them); :data:`THROTTLED_WAIT` if it names none."""
    try:
        return max(0.0, float(response.headers.get("Retry-After")))
    except (AttributeError, TypeError, ValueError):
        return THROTTLED_WAIT


def _promotions_path(namespace: str | None) -> str:
    return _collection(PLURAL, namespace)


def _collection(plural: str, namespace: str | None) -> str:
    if namespace is None:
        return f"/apis/{GROUP}/{VERSION}/{plural}"
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"


def _lease_path(namespace: str, name: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"


def _error(method: str, path: str, status: int, data: bytes | None) -> KubeError:
    message = "error"
    try:
        document = json.loads(data or b"{}")
        if isinstance(document, dict) and isinstance(document.get("message"), str):
            message = document["message"]
    except ValueError:
        pass
    text = f"{method} {path}: {status} {message}"
    if status == 409:
        return ObjectChanged(text, status)
    return KubeError(text, status)
