"""A Seldon Deploy v1alpha1 API simulator for the operator's tests.

Start it as a process with ``python tests/simulator/run.py`` (any working
directory), or ``python -m tests.simulator`` when the repository root is on
``sys.path`` *after* the standard library (``python -m`` with the root as the
working directory fails before any code of ours runs, because the root's
``operator/`` directory shadows the standard-library ``operator`` module)::

    --host 127.0.0.1 --port N (0 = free port) --issuer URL
    [--jwks-url URL]           default {issuer}/protocol/openid-connect/certs
    [--jwks-ca-file F]         CA bundle for an https JWKS endpoint
    [--audience-check off|AUD] default off
    [--leeway S]               exp/nbf leeway, default 2, at most 5
    [--rollout-seconds S]      default 1.0
    [--gitops-sync-seconds S]  default 2.0
    [--tls-cert F --tls-key F] serve https
    [--log-level LEVEL]        logs go to stderr

Once listening it prints exactly one line to stdout, flushed:
``SIMULATOR READY http://127.0.0.1:N`` (``https`` with TLS). In-process tests use
``server.create_app(SimulatorConfig(...))`` or ``testing.RunningSimulator``;
``control.SimulatorControl`` drives the ``/_control`` API.

Choices where the real service is unknown or where the simulator departs from it
------------------------------------------------------------------------------
- Errors: every failing API response is the SDK's ``Error`` model,
  ``{"code", "message", "requestId"}``, ``application/json``; the request id is
  also in the ``X-Request-Id`` header. Unknown paths (404) and wrong methods
  (405) answer in the same shape. Authentication runs before routing, so any
  path under the API base without a valid token is 401 (with
  ``WWW-Authenticate: Bearer``).
- Tokens: RS256 only, signature checked against the JWKS (re-fetched when a
  token names an unknown ``kid``; keys with ``use: enc`` are ignored), ``iss``
  must equal ``--issuer``, ``exp`` is required and enforced with the leeway, no
  audience check unless asked. A JWKS that cannot be fetched makes requests 401,
  as token verification fails. User = ``email`` claim, else
  ``preferred_username``; groups = ``groups`` claim, compared with any leading
  ``/`` stripped on both sides.
- Namespaces: unknown and unmanaged namespaces (not labelled
  ``seldon.restricted: "false"``) answer 403 like a missing permission, so the
  API never reveals which namespaces exist. Permission checks come before body
  validation and before existence checks (403 beats 400/404/409). ``read`` is
  needed for list, read, validate and gitlogs; ``write`` for create, update,
  delete, gitrevert and gitrestore; ``write`` does not imply ``read``.
- Bodies: 400 for everything invalid (empty body, not JSON, not an object,
  missing or non-DNS-1123 ``metadata.name``, missing ``spec``, no
  ``spec.predictors`` with a ``name`` and a ``graph`` each, a different
  ``metadata.namespace``, a foreign apiVersion/kind, a PUT whose body names
  another deployment); never 422. Validate returns the SDK ``Message``
  (``{"code": 200, "message"}``) for a valid body and 400 otherwise.
- seldon-deploy-sdk 2.4.0 cannot validate: ``validate_seldon_deployment`` is a
  GET and the SDK's REST layer drops the body of GETs, so the simulator sees an
  empty body and answers 400. Send the body yourself (``requests`` does).
- Writes: create answers 200 (not 201) with the stored object; server-owned
  metadata (uid, resourceVersion, generation, creationTimestamp, ...) and any
  client ``status`` are ignored. ``resourceVersion`` rises on every write, even
  a no-op one, and is not checked for conflicts (last write wins);
  ``generation`` is 1 on create and rises only when the spec changes. Delete
  answers a ``Message``. A name of ``validate`` is routed to validate (as in
  the SDK's path table).
- Status: ``{state, observedGeneration, description?, address?}`` derived from
  timestamps at read time, no background tasks. A rollout starts at the write
  (or at the GitOps sync), reports ``Creating`` for the rollout delay, then
  ``Available`` or ``Failed``. Delays and failure marks are read when a write
  schedules its rollout, so changing them affects later writes only. A failure
  mark may be limited to specs whose JSON contains a text, so a rollback to
  the old spec can succeed.
- GitOps (``seldon.gitops: "enabled"``): every write, revert and restore is a
  commit (action/message from the query, defaulting to Create/Update/Delete/
  Revert/Restore; author = the caller's identity). Reads show the repository at
  once; the status stays the old one (or absent for a new deployment) until the
  sync delay has passed, then the rollout runs. A newer write before the sync
  replaces the pending one (the sync applies the latest commit). Deletes vanish
  from reads at once. Seeding into a GitOps namespace records a commit with
  author ``simulator`` and action ``Seed``.
- History: ``gitlogs`` returns ``list[AuditLog]`` (``Hash``, ``AuthorName``,
  ``AuthorWhen``, ``CommitterName`` = ``seldon-deploy``, ``CommitterWhen``) plus
  the extensions ``Action`` and ``Message``, newest first, empty for a
  deployment without history. ``gitrevert?hash=H`` (full hash or a prefix of at
  least 7 digits) writes the state before H as a new commit (deleting if H
  created the deployment); 400 without ``hash``, 404 for an unknown one, 409 if
  there is nothing to revert. ``gitrestore[?hash=H]`` re-creates a deleted
  deployment from the state at H (for a delete commit: the state it removed) or
  from its last existing state; 409 if it exists, 404 without history. All
  three answer 400 in a namespace that is not GitOps.
- Traffic (``traffic``): ``GET /metrics`` (no token, never faulted or logged)
  serves Seldon Core executor metrics for synthetic requests to every Available
  deployment, split by its predictors' ``traffic``; the control API sets the
  request rate per deployment and each predictor's error rate, error code and
  latency (``SimulatorControl.set_request_rate``/``set_predictor_behaviour``).
  Counts follow the clock exactly, with no randomness.
- Faults act in front of the API like an ingress: they apply before
  authentication, so faulted requests are logged with ``user`` null; a dropped
  connection is logged with ``status`` null. The control API is never faulted,
  never authenticated and never logged. The request log holds no headers at
  all, so no token can leak into it.
"""
