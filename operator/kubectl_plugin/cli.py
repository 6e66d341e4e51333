"""The commands of ``kubectl promotion`` and their arguments."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from promotion_operator.kubectl_plugin import operations, render
from promotion_operator.kubectl_plugin.kube import (
    Impersonation,
    Kube,
    OfKind,
    PluginError,
    load,
    load_in_cluster,
)
from promotion_operator.kubectl_plugin.operations import CONFLICT_ATTEMPTS, new_retry_token
from promotion_operator.kubectl_plugin.paths import (
    PATH_PLURAL,
    FreightFollowed,
    render_path,
)
from promotion_operator.kubectl_plugin.policies import (
    POLICY_PLURAL,
    PolicyDecision,
    decide_freeze,
    decide_unfreeze,
)
from promotion_operator.kubectl_plugin.resource import (
    GROUP,
    KINDS,
    Decision,
    ExitCode,
    Promotion,
    RetryWait,
)
from promotion_operator.kubectl_plugin.watching import RunFollowed, Watcher

PROG = "kubectl promotion"
__all__ = ["CONFLICT_ATTEMPTS", "main", "new_retry_token"]
DEFAULT_WATCH_TIMEOUT = "30m"
DEFAULT_REQUEST_TIMEOUT = 30.0
_OBJECT = f"modelpromotion.{GROUP}"

EXIT_CODES = """\
exit codes:
  0  done (watch: the run Succeeded, a dry run too; path watch: the newest freight
     reached the last stage), or nothing needed doing
  1  watch: the run Failed (path watch: a stage's run, with the newest freight)
  2  watch: the run was RolledBack (path watch: likewise)
  3  watch: the run was Aborted (also when an abort rolled it back)
  4  watch: timed out before the run ended (path watch: before the freight arrived)
  5  no such ModelPromotion (or PromotionPath, or stage of it), or a usage error
  6  refused (by the API server, e.g. Forbidden or an admission policy, or because
     the run or the stage cannot take the request now), or the API server could not
     be reached
  7  path watch: a stage is Blocked, and no stage before it may still move
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with 5 (2 means RolledBack to ``watch``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.NOT_FOUND, f"{self.prog}: error: {message}\n")


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (``90s``, ``30m``, ``1h30m``) or a number of seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION.match(text):
            raise argparse.ArgumentTypeError(
                f"invalid duration {text!r} (use e.g. 90s, 30m, 1h30m)"
            ) from None
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit]
            for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
        )
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}")
    return seconds


def parse_request_timeout(text: str) -> float | None:
    """kubectl's ``--request-timeout``: a duration, a number of seconds, or 0 (no limit)."""
    seconds = parse_duration(text)
    return None if seconds == 0 else seconds


def _common() -> _Parser:
    """Options accepted before and after the command (kubectl passes a plugin its
    arguments as they are)."""
    common = _Parser(add_help=False)
    group = common.add_argument_group("kubeconfig")
    group.add_argument(
        "--kubeconfig",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)",
    )
    group.add_argument(
        "--context", default=argparse.SUPPRESS, help="the kubeconfig context (default: current)"
    )
    group.add_argument(
        "--as",
        dest="as_user",
        default=argparse.SUPPRESS,
        metavar="USER",
        help="act as this user (impersonation, as kubectl --as)",
    )
    group.add_argument(
        "--as-group",
        dest="as_groups",
        action="append",
        default=argparse.SUPPRESS,
        metavar="GROUP",
        help="act as a member of this group; repeat for more (needs --as)",
    )
    group.add_argument(
        "--request-timeout",
        type=parse_request_timeout,
        default=argparse.SUPPRESS,
        metavar="DURATION",
        help="how long a request may wait for its answer, e.g. 10s, 1m; 0 waits as "
        "long as it takes (default 30s; watches wait for their own end)",
    )
    group.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        help="the namespace (default: the context's, else default)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="say more on stderr (conflicts retried, watch reconnections)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog=PROG,
        description=(
            "List, inspect, watch and steer ModelPromotions (deploy.mlops.dev), the "
            "PromotionPaths they move through, and the PromotionPolicies' freezes, with your "
            "kubeconfig: the Kubernetes API only, never Seldon Deploy."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help_text: str, run: Callable[[Session], ExitCode]
    ) -> argparse.ArgumentParser:
        return _subcommand(commands, common, name, help_text, run)

    sub = command("list", "list ModelPromotions with their phase and progress", cmd_list)
    sub.add_argument(
        "-A", "--all-namespaces", action="store_true", help="in every namespace (adds NAMESPACE)"
    )
    sub.add_argument("-o", "--output", choices=["json", "yaml", "wide"], help="output format")

    sub = command("get", "show one ModelPromotion: spec, run, conditions, canary, history", cmd_get)
    sub.add_argument("name")
    sub.add_argument("-o", "--output", choices=["json", "yaml"], help="print the object")

    sub = command(
        "watch",
        "print each phase change until the run of the current generation ends; "
        "the exit code says how it ended",
        cmd_watch,
    )
    sub.add_argument("name")
    _timeout_option(sub)

    sub = command("approve", "approve the run waiting for approval, as yourself", cmd_approve)
    sub.add_argument("name")

    sub = command("abort", "stop the current run (what it wrote is rolled back)", cmd_abort)
    sub.add_argument("name")

    sub = command(
        "retry", "start a new run of the same spec after a run ended (no spec edit)", cmd_retry
    )
    sub.add_argument("name")
    sub.add_argument(
        "--watch", action="store_true", help="then watch the new run (exit code as for watch)"
    )
    _timeout_option(sub)

    sub = command("resume", "end a canary pause that waits for a person", cmd_resume)
    sub.add_argument("name")

    sub = command(
        "dashboard",
        "serve a web page of the ModelPromotions you can see, live, on 127.0.0.1 "
        "(with the approve, abort, retry and resume buttons, acting as you)",
        cmd_dashboard,
    )
    sub.add_argument(
        "--port", type=int, default=0, help="the port on 127.0.0.1 (default: a free one)"
    )
    sub.add_argument("--read-only", action="store_true", help="show no buttons, write nothing")
    sub.add_argument(
        "--no-browser", action="store_true", help="only print the URL, open no browser"
    )
    sub.add_argument(
        "--prometheus-url",
        default=os.environ.get("PROMETHEUS_URL") or None,
        help="draw each analysis template's query over the run under its measurements, "
        "from this Prometheus (default: $PROMETHEUS_URL; none: no range queries)",
    )
    _signin_options(sub)

    sub = command("history", "the finished runs, newest first", cmd_history)
    sub.add_argument("name")
    sub.add_argument("-o", "--output", choices=["json", "yaml", "wide"], help="output format")

    _path_commands(command("path", PATH_HELP, _usage_of_path))

    sub = command(
        "freeze",
        "freeze a PromotionPolicy's target namespaces (spec.freeze): runs into them that "
        "have not written wait, and the API server refuses new ones and approvals",
        cmd_freeze,
    )
    sub.add_argument("name", metavar="POLICY", help="the PromotionPolicy (kubectl get mpp)")
    sub.add_argument(
        "--reason", default="", help="why (required by the policy's schema; in every refusal)"
    )
    sub = command("unfreeze", "lift a PromotionPolicy's freeze", cmd_unfreeze)
    sub.add_argument("name", metavar="POLICY", help="the PromotionPolicy")
    return parser


PATH_HELP = (
    "a PromotionPath: view its stages side by side with their freight (path get NAME), "
    "follow them (path watch NAME), promote a manual stage (path promote NAME STAGE), "
    "hold a stage or release it (path hold|release NAME STAGE)"
)


_P = TypeVar("_P", bound=argparse.ArgumentParser)


def _subcommand(
    parent: argparse._SubParsersAction[_P],
    common: _P,
    name: str,
    help_text: str,
    run: Callable[[Session], ExitCode],
) -> _P:
    """A command (or a ``path`` action) with the common options, the exit codes in its
    help, and ``run`` to call."""
    sub = parent.add_parser(
        name,
        help=help_text,
        description=help_text,
        parents=[common],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(run=run)
    return sub


def _path_commands(path: argparse.ArgumentParser) -> None:
    """``path get|promote|hold|release|watch``, each with its own help."""
    actions = path.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = _common()

    def action(
        name: str, help_text: str, run: Callable[[Session], ExitCode]
    ) -> argparse.ArgumentParser:
        sub = _subcommand(actions, common, name, help_text, run)
        sub.add_argument("name", help="the PromotionPath")
        return sub

    action("get", "show the path's stages side by side with their freight", cmd_path_get)
    sub = action(
        "promote",
        "start the freight waiting at a manual stage (exit 6: the stage is automatic or "
        "nothing waits there)",
        cmd_path_promote,
    )
    sub.add_argument("stage")
    sub = action(
        "hold",
        "hold a stage: no new run starts there (a running one goes on), whatever its "
        "policy, until it is released; the path shows who holds it and why",
        cmd_path_hold,
    )
    sub.add_argument("stage")
    sub.add_argument("--reason", default="", help="why, for the path's status (e.g. INC-42)")
    sub = action(
        "release",
        "release a held stage: it starts what waits there as it would have",
        cmd_path_release,
    )
    sub.add_argument("stage")
    sub = action(
        "watch",
        "print the stages side by side with their freight at each change, until the "
        "newest freight has reached the last stage (0), a stage failed with it (1, 2, 3 "
        "as for watch) or a stage is Blocked with nothing before it moving (7)",
        cmd_path_watch,
    )
    _timeout_option(sub, "for the newest freight to reach the last stage")


def _usage_of_path(session: Session) -> ExitCode:
    # Never run: argparse requires an action, whose own ``run`` replaces this one.
    _err("error: path needs an action: get, watch, promote, hold or release")
    return ExitCode.NOT_FOUND


def _signin_options(sub: argparse.ArgumentParser) -> None:
    """Sign-in mode: the dashboard as a shared service, each person signed in through
    OIDC and acting as themselves (impersonation)."""
    group = sub.add_argument_group(
        "sign-in mode (in the cluster): with --oidc-issuer, people sign in and the "
        "dashboard impersonates each of them; its own credentials need only impersonate"
    )
    group.add_argument("--oidc-issuer", metavar="URL", help="the OIDC issuer (https)")
    group.add_argument("--oidc-client-id", metavar="ID", help="the dashboard's client id")
    group.add_argument(
        "--oidc-client-secret-file",
        metavar="PATH",
        help="a file holding the client's secret (a mounted Secret)",
    )
    group.add_argument(
        "--oidc-username-claim", default="email", metavar="CLAIM",
        help="the ID token claim naming the user (default email; it must be verified)",
    )  # fmt: skip
    group.add_argument(
        "--oidc-groups-claim", default="groups", metavar="CLAIM",
        help="the ID token claim listing the groups (default groups)",
    )  # fmt: skip
    group.add_argument(
        "--oidc-username-prefix", default="oidc:", metavar="PREFIX",
        help="put before the user name, as kube-apiserver's flag (default oidc:)",
    )  # fmt: skip
    group.add_argument(
        "--oidc-groups-prefix", default="oidc:", metavar="PREFIX",
        help="put before each group, as kube-apiserver's flag (default oidc:)",
    )  # fmt: skip
    group.add_argument(
        "--public-url", metavar="URL",
        help="the URL people open (https; http only on loopback); the provider sends "
        "them back to URL/signin/callback",
    )  # fmt: skip
    group.add_argument(
        "--listen", default="0.0.0.0:8080", metavar="ADDRESS:PORT",
        help="where to listen in sign-in mode (default 0.0.0.0:8080)",
    )  # fmt: skip
    group.add_argument(
        "--user-namespaces", default="", metavar="NS,NS",
        help="for a person who may not list across all namespaces: the namespaces to "
        "show (each one they may list; default: the dashboard's -n, else its own)",
    )  # fmt: skip
    group.add_argument(
        "--session-ttl", type=parse_duration, default=parse_duration("1h"),
        metavar="DURATION", help="how long a session lasts after sign-in (default 1h)",
    )  # fmt: skip


def _timeout_option(sub: argparse.ArgumentParser, what: str = "for the run to end") -> None:
    sub.add_argument(
        "--timeout",
        type=parse_duration,
        default=parse_duration(DEFAULT_WATCH_TIMEOUT),
        metavar="DURATION",
        help=f"how long to wait {what} (default {DEFAULT_WATCH_TIMEOUT})",
    )


# --- running the commands -------------------------------------------------------------


def _out(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Session:
    """The parsed arguments and, made on first use, the API client."""

    def __init__(self, args: argparse.Namespace, kube: Kube | None = None) -> None:
        self.args = args
        self._kube = kube

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            args = self.args
            user: str | None = getattr(args, "as_user", None)
            groups: list[str] = getattr(args, "as_groups", None) or []
            if groups and not user:
                # What kubectl says, and refuses, too.
                raise PluginError(
                    "error: requesting groups without impersonating a user: "
                    "give --as with --as-group",
                    ExitCode.NOT_FOUND,
                )
            self._kube = Kube(
                load(
                    getattr(args, "kubeconfig", None),
                    getattr(args, "context", None),
                    impersonate=Impersonation(user, tuple(groups)) if user else None,
                    request_timeout=getattr(args, "request_timeout", DEFAULT_REQUEST_TIMEOUT),
                )
            )
        return self._kube

    @property
    def namespace(self) -> str:
        given = getattr(self.args, "namespace", None)
        return str(given) if given else self.kube.default_namespace

    def verbose(self, text: str) -> None:
        if getattr(self.args, "verbose", False):
            _err(text)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def cmd_list(session: Session) -> ExitCode:
    args = session.args
    namespace = None if args.all_namespaces else session.namespace
    body = session.kube.list(namespace)
    if args.output in ("json", "yaml"):
        _out(render.dump(body, args.output))
        return ExitCode.SUCCEEDED
    items = [Promotion(item) for item in body.get("items") or [] if isinstance(item, dict)]
    if not items:
        where = "" if namespace is None else f" in {namespace} namespace"
        _err(f"No resources found{where}.")
        return ExitCode.SUCCEEDED
    _out(render.list_table(items, _now(), args.all_namespaces, args.output == "wide"))
    return ExitCode.SUCCEEDED


def cmd_get(session: Session) -> ExitCode:
    args = session.args
    body = session.kube.get(session.namespace, args.name)
    if args.output:
        _out(render.dump(body, args.output))
    else:
        _out(render.summary(Promotion(body), _now()))
    return ExitCode.SUCCEEDED


def cmd_history(session: Session) -> ExitCode:
    args = session.args
    promotion = Promotion(session.kube.get(session.namespace, args.name))
    history = promotion.history
    if args.output in ("json", "yaml"):
        _out(render.dump([dict(entry) for entry in history], args.output))
        return ExitCode.SUCCEEDED
    if not history:
        _err(f"No finished runs of {session.namespace}/{args.name} yet.")
        return ExitCode.SUCCEEDED
    _out(render.history_table(history, wide=args.output == "wide"))
    return ExitCode.SUCCEEDED


def _watch(session: Session, name: str, waiting_for: RetryWait | None) -> ExitCode:
    return Watcher(
        session.kube,
        session.namespace,
        name,
        session.args.timeout,
        follow=RunFollowed(waiting_for),
        out=_out,
        note=_err,
    ).run()


def cmd_watch(session: Session) -> ExitCode:
    return _watch(session, session.args.name, None)


def request(
    session: Session, name: str, annotation: str, decide: Callable[[Promotion], Decision]
) -> Decision:
    """Write one request annotation (:func:`operations.request`) in the session's
    namespace, saying each conflict retried when ``-v`` is given."""
    return operations.request(
        session.kube, session.namespace, name, annotation, decide, session.verbose
    )


def _report(name: str, decision: Decision) -> ExitCode:
    if decision.exit_code != ExitCode.SUCCEEDED:
        _err(f"error: {_OBJECT}/{name}: {decision.message}")
    else:
        _out(f"{_OBJECT}/{name}: {decision.message}")
    return decision.exit_code


def _operate(session: Session, operation: Callable[..., Decision]) -> Decision:
    return operation(session.kube, session.namespace, session.args.name, session.verbose)


def cmd_approve(session: Session) -> ExitCode:
    return _report(session.args.name, _operate(session, operations.approve))


def cmd_abort(session: Session) -> ExitCode:
    return _report(session.args.name, _operate(session, operations.abort))


def cmd_retry(session: Session) -> ExitCode:
    name = session.args.name
    decision = _operate(session, operations.retry)
    code = _report(name, decision)
    if code != ExitCode.SUCCEEDED or not session.args.watch:
        return code
    return _watch(session, name, decision.watch)


def cmd_resume(session: Session) -> ExitCode:
    return _report(session.args.name, _operate(session, operations.resume))


def cmd_dashboard(session: Session) -> ExitCode:
    # Imported here: aiohttp is needed by this command only.
    from promotion_operator.kubectl_plugin.dashboard import serve
    from promotion_operator.kubectl_plugin.dashboard.prometheus import url_refusal

    args = session.args
    if args.prometheus_url and (refusal := url_refusal(args.prometheus_url)):
        _err(f"error: {refusal}")
        return ExitCode.NOT_FOUND
    options = serve.Options(
        namespace=getattr(args, "namespace", None),
        port=args.port,
        read_only=args.read_only,
        open_browser=not args.no_browser,
        prometheus_url=args.prometheus_url,
    )
    if args.oidc_issuer:
        return _dashboard_signed_in(session, options)
    return serve.run(session.kube, options, out=_out)


def _dashboard_signed_in(session: Session, options: Any) -> ExitCode:
    """Sign-in mode: check every setting, then serve."""
    from promotion_operator.kubectl_plugin.dashboard import oidc, signin

    args = session.args
    usage = ExitCode.NOT_FOUND
    if getattr(args, "as_user", None) or getattr(args, "as_groups", None):
        raise PluginError(
            "error: --as and --as-group do not go with --oidc-issuer: the dashboard "
            "acts as each signed-in person",
            usage,
        )
    if refusal := oidc.issuer_refusal(args.oidc_issuer):
        raise PluginError(f"error: {refusal}", usage)
    if not args.oidc_client_id:
        raise PluginError("error: --oidc-client-id is needed with --oidc-issuer", usage)
    secret = _client_secret(args.oidc_client_secret_file)
    config = signin.settings(args.public_url, args.listen, args.session_ttl, args.user_namespaces)
    claims = oidc.Claims(
        args.oidc_username_claim,
        args.oidc_groups_claim,
        args.oidc_username_prefix,
        args.oidc_groups_prefix,
    )
    try:
        provider = oidc.Provider.discover(args.oidc_issuer)
    except oidc.SignInError as error:
        raise PluginError(f"error: {error}") from None
    client = oidc.Client(provider, args.oidc_client_id, secret, config.redirect_uri, claims=claims)
    own = _dashboard_kube(session, None)
    _out(f"The dashboard's own identity: {own.username()} (it impersonates each person)")

    def kube_for(identity: oidc.Identity) -> Kube:
        return _dashboard_kube(session, Impersonation(identity.user, identity.groups))

    return signin.run(signin.SignIn(client, kube_for, options, config, _out))


def _client_secret(path: str | None) -> str:
    """The client secret, from its file (never a flag: flags show in ``ps``)."""
    if not path:
        raise PluginError(
            "error: --oidc-client-secret-file is needed with --oidc-issuer", ExitCode.NOT_FOUND
        )
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().strip()
    except OSError as error:
        raise PluginError(
            f"error: cannot read --oidc-client-secret-file {path}: {error.strerror}",
            ExitCode.NOT_FOUND,
        ) from None
    if not secret:
        raise PluginError(f"error: --oidc-client-secret-file {path} is empty", ExitCode.NOT_FOUND)
    return secret


def _dashboard_kube(session: Session, who: Impersonation | None) -> Kube:
    """The dashboard's own credentials (``--kubeconfig``, ``$KUBECONFIG``, else the
    Pod's ServiceAccount), impersonating ``who``."""
    args = session.args
    kubeconfig = getattr(args, "kubeconfig", None)
    timeout = getattr(args, "request_timeout", DEFAULT_REQUEST_TIMEOUT)
    if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        loaded = load(
            kubeconfig, getattr(args, "context", None), impersonate=who, request_timeout=timeout
        )
    else:
        loaded = load_in_cluster(impersonate=who, request_timeout=timeout)
    return Kube(loaded)


def _quiet_libraries() -> None:
    # urllib3 warns about every retried connection; the plugin says it once, itself.
    for logger in ("urllib3", "kubernetes"):
        logging.getLogger(logger).setLevel(logging.CRITICAL)


def cmd_path_get(session: Session) -> ExitCode:
    body = session.kube.get(session.namespace, session.args.name, plural=PATH_PLURAL)
    _out(render_path(body, _now()))
    return ExitCode.SUCCEEDED


def written(session: Session, plural: str, write: Callable[[], operations.Written]) -> ExitCode:
    """A change of a path or a policy (:func:`operations.guarded_patch`), printed."""
    shown = f"{KINDS.get(plural, plural).lower()}.{GROUP}/{session.args.name}"
    try:
        decision = write()
    except operations.KeptChanging:
        _err(f"error: {shown}: it kept changing; try again")
        return ExitCode.ERROR
    if decision.exit_code != ExitCode.SUCCEEDED:
        _err(f"error: {shown}: {decision.message}")
    else:
        _out(f"{shown}: {decision.message}")
    return decision.exit_code


def cmd_path_promote(session: Session) -> ExitCode:
    kube, namespace, args = session.kube, session.namespace, session.args
    return written(
        session,
        PATH_PLURAL,
        lambda: operations.promote_stage(kube, namespace, args.name, args.stage, session.verbose),
    )


def cmd_path_hold(session: Session) -> ExitCode:
    kube, namespace, args = session.kube, session.namespace, session.args
    return written(
        session,
        PATH_PLURAL,
        lambda: operations.hold_stage(
            kube, namespace, args.name, args.stage, args.reason, session.verbose
        ),
    )


def cmd_path_release(session: Session) -> ExitCode:
    kube, namespace, args = session.kube, session.namespace, session.args
    return written(
        session,
        PATH_PLURAL,
        lambda: operations.release_stage(kube, namespace, args.name, args.stage, session.verbose),
    )


def _policy_write(session: Session, decide: Callable[[dict[str, Any]], PolicyDecision]) -> ExitCode:
    kube, namespace, name = session.kube, session.namespace, session.args.name
    return written(
        session,
        POLICY_PLURAL,
        lambda: operations.guarded_patch(
            kube, POLICY_PLURAL, namespace, name, decide, session.verbose
        ),
    )


def cmd_freeze(session: Session) -> ExitCode:
    reason = session.args.reason
    return _policy_write(session, lambda body: decide_freeze(body, reason))


def cmd_unfreeze(session: Session) -> ExitCode:
    return _policy_write(session, decide_unfreeze)


def cmd_path_watch(session: Session) -> ExitCode:
    return Watcher(
        OfKind(session.kube, PATH_PLURAL),
        session.namespace,
        session.args.name,
        session.args.timeout,
        follow=FreightFollowed(),
        out=_out,
        note=_err,
    ).run()


def main(argv: Sequence[str] | None = None) -> int:
    """``kubectl-promotion``: parse, run one command, return its exit code."""
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    run: Callable[[Session], ExitCode] = args.run
    try:
        return int(run(Session(args)))
    except PluginError as error:
        _err(error.message)
        return int(error.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, anywhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.ERROR)
    except Exception as error:  # a bug: one line, the traceback only when asked
        if getattr(args, "verbose", False):
            traceback.print_exc()
        _err(f"error: internal error: {type(error).__name__}: {error} (-v shows the traceback)")
        return int(ExitCode.ERROR)
