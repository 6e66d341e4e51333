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
``control.SimulatorControl`` drives the ``/_control`` API (seeds, failure marks,
delays and traffic for SeldonDeployments and Core v2 Models and Pipelines).

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
  ``Available`` or ``Failed``. A SeldonDeployment write that changes only the
  ``traffic`` of predictors it already has (none added, removed or renamed,
  nothing else changed) takes the traffic delay instead (``traffic_seconds``,
  default 0: ``Available`` at once), because Seldon applies a traffic-only
  change to its routing without new pods, while any other spec change starts
  new ones. Delays and failure marks are read when a write schedules its
  rollout, so changing them affects later writes only. A failure mark may be
  limited to specs whose JSON contains a text, so a rollback to
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
  Each successful request is also one prediction, counted in
  ``predictions_total`` (a Python model's custom COUNTER as Seldon Core v1's
  wrapper exposes it: tag ``class``, labels ``method``, ``deployment_name``,
  ``model_name``, ``model_image``, ``model_version``, ``predictor_name``,
  ``predictor_version``, ``worker_id``, ...), split over labels by a
  distribution settable per predictor (``predictions``; by default setosa
  0.5, versicolor 0.3, virginica 0.2 everywhere, shadows included).
  Counts follow the clock exactly, with no randomness. Core v2 adds
  ``seldon_pipeline_infer_total``/``seldon_pipeline_infer_seconds_total``
  ``{namespace, pipeline, code}`` and ``seldon_model_infer_total``/
  ``seldon_model_infer_seconds_total`` ``{namespace, model, code}``, families
  shown only once they have samples. Only pipelines with a rate of their own
  get requests (``set_request_rate(r, namespace=, name=, kind="Pipeline")``;
  no default rate); P's experiment splits them (candidates by weight, the
  mirror gets a copy), a pipeline serves only while Ready (requests routed to
  one that is not are not counted), and each served request counts for the
  pipeline and each Model of its steps. Error rate/code/latency per pipeline
  and per model (``set_core_v2_behaviour``) shape only that series: model
  errors do not become pipeline errors. In a GitOps namespace the pipeline's
  current (repository) steps decide which models are counted.
- Seldon Core v2 (``api_core_v2``, ``core_v2``): Models
  (``POST .../models``, ``GET|PUT|DELETE .../models/{name}``; no list, as
  in the SDK: ``GET .../models`` is 405), Pipelines (list, CRUD,
  ``GET .../pipelines/{name}/models``) and pipeline Experiments, at
  seldon-deploy-sdk 2.4.0's paths, with the auth, permissions (``read`` for
  reads and the models of a pipeline, ``write`` for the rest), error shape,
  request log and faults of SeldonDeployments, and the same write rules
  (200, server fields ignored, generation +1 only on a spec change,
  resourceVersion +1 per write, delete answers a ``Message``). Bodies must
  use nested ``metadata`` (the SDK's flat ``Model``/``Pipeline`` request types
  are a codegen artifact; a flat body is 400 for lack of metadata).
  apiVersion ``mlops.seldon.io/v1alpha1``. Names are checked as DNS-1123
  subdomains, like deployment names. Also served, beyond the brief: the SDK's
  ``GET .../models|pipelines/{name}/gitlogs`` (GitOps namespaces only, 400
  elsewhere). Pipeline explainer and gitdiff paths are not served (404).
- Models: ``spec.storageUri`` (non-empty string) is required;
  ``requirements`` must be a list of strings, ``replicas``/``minReplicas``/
  ``maxReplicas`` non-negative integers (not booleans); everything else in the
  spec is kept unchecked. Status ``{observedGeneration, replicas, conditions:
  [ModelReady, Ready]}``: ``ModelProgressing`` during the rollout,
  ``ModelAvailable`` after, ``ModelFailed`` (message = the failure text)
  under a failure mark; ``Ready`` repeats ModelReady. ``replicas`` is the
  desired count (``replicas``, else ``minReplicas``, else 1) while Ready and 0
  otherwise. Conditions carry ``lastTransitionTime`` from the rollout's
  timestamps; progressing and available messages are empty.
- Pipelines: ``spec.steps`` non-empty, each an object with a unique name;
  ``spec.output.steps``, if given, a list of those names; other step and
  spec fields are kept as sent. Every step names the Model of that name.
  Status ``{observedGeneration, conditions: [ModelsReady, PipelineReady,
  Ready]}`` in that order. ModelsReady True (reason ``ModelsReady``) iff every
  step's Model exists and is Ready now, else ``ModelsNotReady`` with a message
  listing missing and not-ready models (its lastTransitionTime is the latest
  of the pipeline's rollout start and its existing models' transitions: a
  model's deletion time is not remembered). PipelineReady:
  ``PipelineCreating``/``PipelineReady``/``PipelineFailed``. Ready True
  (reason ``PipelineReady``) iff both, else a copy of the first False of
  PipelineReady, ModelsReady. ModelsReady reads the steps of the stored spec
  (in a GitOps namespace the repository's, even before the sync). Deleting a
  model is allowed and makes the
  pipelines naming it not Ready; deleting pipeline P deletes its experiment.
  ``.../pipelines/{name}/models`` is a ``ModelList`` of the existing Models
  the steps name, in step order, each once. A pipeline list's ``metadata`` is
  ``{}``.
- Rollouts of Models and Pipelines use the global rollout delay (and GitOps
  sync delay) unless a per-object override of that kind is set
  (``set_delays(..., kind="Model"|"Pipeline")``); per-name overrides and
  failure marks are per kind, so a Model ``iris`` and a SeldonDeployment
  ``iris`` are independent. A mark without a text fails with "simulated
  failure: model|pipeline marked to fail".
- GitOps covers Models and Pipelines exactly as deployments: every write
  (including promotions) is a commit of kind Model/Pipeline, reads show the
  repository at once, the status keeps the old generation (or is absent)
  until the sync delay passed. Experiments are never committed and apply at
  once. There is no revert/restore for Core v2 (the SDK has none).
- Experiments (the simulator's convention): the canary candidate of pipeline
  P is pipeline ``P-canary`` and the shadow candidate ``P-shadow``, both in
  P's namespace; the experiment is named P (one per pipeline). A canary
  experiment is one with a candidate named ``P-canary``; a shadow one has
  mirror ``P-shadow``. ``POST .../experiment/canary?weight=W`` (W integer
  1..99, else 400; 403 comes first) needs P and ``P-canary`` (404 naming the
  missing one), creates or re-weights the experiment (candidates P at 100-W
  and ``P-canary`` at W, default P, resourceType pipeline); the same weight
  again changes nothing (not even resourceVersion); a P whose experiment is
  not a canary gets 409. Shadow likewise, without weight: candidates
  ``[{P, 100}]``, mirror ``{P-shadow, 100}``. ``PUT`` (promote) copies the
  candidate's spec and replaces P's ``labels`` and ``annotations`` with the
  candidate's (P's other metadata stays), as a write of P (generation +1 and a
  rollout only if the spec differs, by the general rule), then deletes the
  experiment and the candidate; in GitOps both are commits with the query's
  action/message (default Promote and Delete). ``DELETE`` removes the
  experiment and the candidate, P untouched. These three answer ``Message``.
  Generic ``GET|POST|PUT|DELETE .../experiment``: POST/PUT take a
  ``SeldonExperiment`` whose metadata may be left out (name defaults to P;
  another name is 400), candidates a non-empty list of ``{name, weight}``
  with unique names of existing pipelines and integer weights >= 0,
  optional ``default`` (one of them), ``resourceType`` (only "pipeline";
  filled in when absent) and ``mirror`` ``{name, percent 0..100}``; 404 if P
  is missing (POST) or has no experiment (PUT/DELETE/GET), 409 if POST finds
  one. Experiment status: ``{observedGeneration, conditions: [Ready]}``, Ready
  True (``ExperimentReady``) iff every candidate and the mirror pipeline is
  Ready, else ``CandidatesNotReady`` naming them. Deleting ``P-canary``
  directly leaves the experiment (not Ready).
- Faults act in front of the API like an ingress: they apply before
  authentication, so faulted requests are logged with ``user`` null; a dropped
  connection is logged with ``status`` null. The control API is never faulted,
  never authenticated and never logged. The request log holds no headers at
  all, so no token can leak into it.
"""
