"""Hypothesis strategies for ModelPromotion specs: valid ones, and broken ones that know
which fields they broke and how the API server reports each.

A valid spec is one the CRD's schema accepts. A broken case is a valid spec (and
name) with one to three independent faults put in. The API server, through the
pinned ``kubectl apply``, reports faults in stages, and each fault records the
stage that catches it:

* kubectl itself refuses a name it cannot put in a URL (empty, ``/``, ``%``)
  before anything is sent;
* strict field validation refuses unknown fields before any other check, naming
  only them;
* then every schema error is reported (wrong type, missing required field, enum,
  pattern, bounds, lengths, ``metadata.name``); an error in a label or annotation
  value names the entry, ``spec.overrides.labels.<key>``;
* the CEL rules (``x-kubernetes-validations``) are reported too, unless a schema
  error that blocks them was found: a wrong type, a missing required field, an
  enum value or a maximum length/items/properties. The server then says "some
  validation rules were not checked". Label and annotation keys are checked by
  CEL rules, which name the whole map (``spec.overrides.labels``).

kubectl apply also copies the whole spec into its last-applied-configuration
annotation, and all annotations share 256 KiB: a spec bigger than that is refused
naming ``metadata.annotations`` as well. The CRD's bounds keep every valid spec
well below that, so only a spec that also breaks a bound (a label value of 256 KiB)
gets there.

Faults are drawn on disjoint parts of the spec, so no fault undoes another.
"""

from __future__ import annotations

import copy
import enum
import re
import string
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import assume
from hypothesis import strategies as st

# Limits of crds/modelpromotions.deploy.mlops.dev.yaml.
MAX_NAMESPACE = 63  # source/target namespace and instance
MAX_NAME = 253  # source/target name, component name and predictor, metadata.name
MAX_IMAGE = 512
MAX_MODEL_URI = 1024
MAX_MESSAGE = 1024
MAX_TIMEOUT_CHARS = 32
MAX_LABELS = 32
MAX_ANNOTATIONS = 16
MAX_COMPONENTS = 16
MAX_LABEL_VALUE = 63
MAX_ANNOTATION_VALUE = 256
MAX_KEY = 317  # label and annotation keys (a CEL rule): a 253-character prefix, "/", 63
MAX_REPLICAS = 1000
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 1_000, 24 * 3_600_000
# kubectl apply copies the spec into an annotation; all annotations share 256 KiB.
MAX_ANNOTATIONS_BYTES = 262_144
# The CRD's patterns, as Python regular expressions for re.fullmatch.
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"  # namespaces and instances
SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"  # names
COMPONENT = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"  # component name and predictor
LABEL_VALUE = rf"({COMPONENT})?"
KEY = rf"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?{COMPONENT}"  # label and annotation keys
# Image and model URI: printable ASCII without the characters JSON escapes ('"', "\\")
# or Go's JSON escapes ("&", "<", ">"), so the spec's copies in annotations stay small.
PRINTABLE = r"[!#-%'-;=?-\[\]-~]+"
# Annotation values and the commit message: no control characters (escaped as \u00XX).
FREE_TEXT = r"[^\x00-\x1f\x7f]*"
MESSAGE_TEXT = r"[^\x00-\x1f\x7f]+"

T = TypeVar("T")
Path = tuple[str | int, ...]  # a place in the spec; () is the spec itself


class Check(enum.Enum):
    """Which stage of admission catches a fault (see the module docstring)."""

    CLIENT = "kubectl"
    UNKNOWN = "strict field validation"
    SCHEMA = "schema"
    BLOCKING = "schema, and the CEL rules are then skipped"
    RULE = "CEL rule"


@dataclass(frozen=True)
class Fault:
    """One thing made invalid: the field as the API server names it, and how."""

    field: str  # "spec.overrides.replicas", "metadata.name"; for CLIENT the message
    check: Check
    what: str

    def mention(self) -> str:
        """What the refusal must contain to name this fault."""
        if self.check is Check.CLIENT:
            return self.field
        if self.check is Check.UNKNOWN:
            return f'unknown field "{self.field}"'
        return f"{self.field}: "


@dataclass(frozen=True)
class Case:
    """A ModelPromotion to apply: its name, its spec (any JSON) and what is wrong."""

    name: str
    spec: Any
    faults: tuple[Fault, ...] = ()

    def name_for(self, serial: int) -> str:
        """A unique name: a valid one gets a suffix, a broken one stays as it is broken."""
        if any(f.field == "metadata.name" or f.check is Check.CLIENT for f in self.faults):
            return self.name
        return f"{self.name}-{serial}"

    def reported(self) -> tuple[Fault, ...]:
        """The faults a refusal names, given the stages of admission."""
        for first in (Check.CLIENT, Check.UNKNOWN):
            early = tuple(f for f in self.faults if f.check is first)
            if early:
                return early
        blocked = any(f.check is Check.BLOCKING for f in self.faults)
        return tuple(f for f in self.faults if not (blocked and f.check is Check.RULE))


def field_name(path: Path) -> str:
    """``("overrides", "components", 0, "image")`` -> ``spec.overrides.components[0].image``."""
    return "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches one of the CRD's patterns, as the API server checks it."""
    return re.fullmatch(pattern, text) is not None


# --- valid specs ------------------------------------------------------------------

LOWER_ALNUM = string.ascii_lowercase + string.digits
PRINTABLE_ASCII = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"&<>\\')
# Any character but control characters (categories Cc; Cs cannot be encoded at all).
FREE_CHARACTERS = st.characters(exclude_categories=("Cc", "Cs"))
DNS_LABELS = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
OBJECT_NAMES = st.from_regex(
    r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?){0,3}",
    fullmatch=True,
)
SOME_TEXT = st.text(max_size=40)
SOME_FREE_TEXT = st.text(FREE_CHARACTERS, max_size=40)


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of the strategies, chosen in proportion to its weight."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def boundary_text(
    low: int, high: int, characters: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[str]:
    """Strings of ``low..high`` characters, one repeated (cheap to draw when long)."""
    return st.builds(
        lambda c, n: c * n,
        st.characters() if characters is None else characters,
        st.integers(low, high),
    )


def texts(
    max_size: int, characters: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[str]:
    """Non-empty text, sometimes (multi-byte, unless ``characters`` says otherwise) right
    at the schema's maximum."""
    return st.one_of(
        st.text(st.characters() if characters is None else characters, min_size=1, max_size=40),
        boundary_text(max(1, max_size - 2), max_size, characters),
    )


def _stretched(short: str, size: int) -> str:
    """``short`` repeated to ``size`` characters, cut to end in a letter or digit.

    For the CRD's name patterns, a repetition of a match is a match, and so is a
    prefix of one that ends in a letter or digit.
    """
    return (short * (size // len(short) + 1))[:size].rstrip("-._")


def stretched(short: str, low: int, high: int) -> st.SearchStrategy[str]:
    """Repetitions of matches of the regular expression ``short``, ``low..high``
    characters long (or a few under: cut to end in a letter or digit)."""
    return st.builds(_stretched, st.from_regex(short, fullmatch=True), st.integers(low, high))


def patterned(short: str, max_size: int) -> st.SearchStrategy[str]:
    """Matches of the regular expression ``short`` (short ones), and repetitions of
    them at (or a few characters under) ``max_size``."""
    return st.one_of(st.from_regex(short, fullmatch=True), stretched(short, max_size - 2, max_size))


# Names of SeldonDeployments: DNS-1123 subdomains ("a..b" and "a.-b" are not).
CRD_NAMES = patterned(
    r"[a-z0-9]([-a-z0-9]{0,11}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,11}[a-z0-9])?){0,2}", MAX_NAME
)
# Names of components and predictors; also the name part of a label key.
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,38}[A-Za-z0-9])?"
COMPONENT_NAMES = patterned(_NAME_PART, MAX_NAME)
LABEL_VALUES = st.one_of(st.just(""), patterned(_NAME_PART, MAX_LABEL_VALUE))
_KEY_PREFIXES = r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?"  # looser than a subdomain: "a..b/c"


@st.composite
def keys(draw: st.DrawFn) -> str:
    """A label or annotation key: ``[prefix/]name``, short or right at the maximum."""
    prefix = draw(st.one_of(st.just(""), patterned(_KEY_PREFIXES, MAX_NAME).map(lambda p: p + "/")))
    name = draw(patterned(_NAME_PART, MAX_KEY - len(prefix)))
    return prefix + name


ANNOTATION_VALUES = st.one_of(
    SOME_FREE_TEXT,
    boundary_text(MAX_ANNOTATION_VALUE - 2, MAX_ANNOTATION_VALUE, FREE_CHARACTERS),
)


@st.composite
def durations(draw: st.DrawFn, low_ms: int, high_ms: int) -> str:
    """A Go duration of ``low_ms..high_ms`` milliseconds, in one of its spellings."""
    ms = draw(st.integers(low_ms, high_ms))
    spellings = [f"{ms}ms", f"{ms / 1000:.3f}s", _hms(ms)]
    if ms % 1000 == 0:
        spellings += [f"{ms // 1000}s", f"00{ms // 1000}s"]
    if ms % 60_000 == 0:
        spellings.append(f"{ms // 60_000}m")
    if ms % 6_000 == 0:
        spellings.append(f"{ms / 60_000:.1f}m")
    return draw(st.sampled_from(spellings))


def _hms(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours}h{minutes}m{seconds}s{millis}ms"


@dataclass(frozen=True)
class Pools:
    """Where the values of a valid spec come from."""

    namespaces: st.SearchStrategy[str]
    names: st.SearchStrategy[str]
    instances: st.SearchStrategy[str]
    timeouts: st.SearchStrategy[str]
    components: st.SearchStrategy[str]  # names in component overrides
    predictors: st.SearchStrategy[str]
    sources: st.SearchStrategy[dict[str, str]] | None = None  # default: namespaces x names
    max_entries: int | None = None  # labels, annotations, components; default: the CRD's
    null_fields: bool = True  # optional fields may be sent as null (the server drops them)
    always_timeout: bool = False  # the default (10m) is too long for some tests

    def most(self, crd_maximum: int) -> int:
        """How many labels, annotations or components a spec may have."""
        return crd_maximum if self.max_entries is None else min(crd_maximum, self.max_entries)


ADMISSION = Pools(
    namespaces=st.one_of(st.sampled_from(["staging", "production"]), DNS_LABELS),
    names=st.one_of(st.just("iris"), CRD_NAMES),
    instances=DNS_LABELS,
    timeouts=durations(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS),
    components=st.one_of(st.just("classifier"), COMPONENT_NAMES),
    predictors=st.one_of(st.just("default"), COMPONENT_NAMES),
)


def _absent_null_or(
    draw: st.DrawFn, into: dict[str, Any], key: str, values: st.SearchStrategy[Any], nulls: bool
) -> None:
    choice = draw(st.sampled_from(("absent", "value", "null") if nulls else ("absent", "value")))
    if choice == "value":
        into[key] = draw(values)
    elif choice == "null":
        into[key] = None


@st.composite
def components(draw: st.DrawFn, pools: Pools = ADMISSION) -> dict[str, Any]:
    """An override entry: a name and an image, a model URI or both."""
    entry: dict[str, Any] = {"name": draw(pools.components)}
    _absent_null_or(draw, entry, "predictor", pools.predictors, pools.null_fields)
    changes = draw(st.sampled_from(("image", "modelUri", "both")))
    if changes in ("image", "both"):
        entry["image"] = draw(texts(MAX_IMAGE, PRINTABLE_ASCII))
    if changes in ("modelUri", "both"):
        entry["modelUri"] = draw(texts(MAX_MODEL_URI, PRINTABLE_ASCII))
    return entry


def string_maps(
    values: st.SearchStrategy[str], max_entries: int
) -> st.SearchStrategy[dict[str, str]]:
    """Labels or annotations: a few, or right at the maximum count."""
    return st.one_of(
        st.dictionaries(keys(), values, max_size=min(4, max_entries)),
        st.dictionaries(keys(), values, min_size=max(0, max_entries - 2), max_size=max_entries),
    )


@st.composite
def overrides(draw: st.DrawFn, pools: Pools = ADMISSION) -> dict[str, Any]:
    """The overrides object, every field optional."""
    result: dict[str, Any] = {}
    nulls = pools.null_fields
    labels = string_maps(LABEL_VALUES, pools.most(MAX_LABELS))
    annotations = string_maps(ANNOTATION_VALUES, pools.most(MAX_ANNOTATIONS))
    most = pools.most(MAX_COMPONENTS)
    entries = st.one_of(
        st.lists(components(pools), max_size=min(3, most)),
        st.lists(components(pools), min_size=max(0, most - 2), max_size=most),
    )
    _absent_null_or(draw, result, "replicas", st.integers(0, MAX_REPLICAS), nulls)
    _absent_null_or(draw, result, "labels", labels, nulls)
    _absent_null_or(draw, result, "annotations", annotations, nulls)
    _absent_null_or(draw, result, "components", entries, nulls)
    return result


def target_differs(spec: Mapping[str, Any]) -> bool:
    """The CRD's rule: another namespace, another name or another instance."""
    source, target = spec["source"], spec["target"]
    return (
        source["namespace"] != target["namespace"]
        or ("name" in target and target["name"] != source["name"])
        or (
            "instance" in target
            and ("instance" not in source or target["instance"] != source["instance"])
        )
    )


@st.composite
def valid_specs(draw: st.DrawFn, pools: Pools = ADMISSION) -> dict[str, Any]:
    """A spec the CRD accepts."""
    nulls = pools.null_fields
    if pools.sources is None:
        source = {"namespace": draw(pools.namespaces), "name": draw(pools.names)}
    else:
        source = dict(draw(pools.sources))
    target = {"namespace": draw(pools.namespaces)}
    if draw(st.booleans()):
        target["name"] = draw(pools.names)
    for side in (source, target):
        if draw(st.integers(0, 9)) == 0:
            side["instance"] = draw(pools.instances)
    spec: dict[str, Any] = {"source": source, "target": target}
    assume(target_differs(spec))
    _absent_null_or(draw, spec, "strategy", st.just("Replace"), nulls)
    _absent_null_or(draw, spec, "overrides", overrides(pools), nulls)
    verification: dict[str, Any] = {}
    _absent_null_or(draw, verification, "timeout", pools.timeouts, nulls)
    if pools.always_timeout:
        verification["timeout"] = draw(pools.timeouts)
    rollback: dict[str, Any] = {}
    _absent_null_or(draw, rollback, "onFailure", st.booleans(), nulls)
    gitops: dict[str, Any] = {}
    _absent_null_or(draw, gitops, "message", texts(MAX_MESSAGE, FREE_CHARACTERS), nulls)
    if pools.always_timeout:
        spec["verification"] = verification
    else:
        _absent_null_or(draw, spec, "verification", st.just(verification), nulls)
    _absent_null_or(draw, spec, "rollback", st.just(rollback), nulls)
    _absent_null_or(draw, spec, "gitops", st.just(gitops), nulls)
    _absent_null_or(draw, spec, "dryRun", st.booleans(), nulls)
    _absent_null_or(draw, spec, "suspend", st.booleans(), nulls)
    return spec


def largest_spec(
    source: Mapping[str, str], target: Mapping[str, str], text: str = "x", image: str = "x"
) -> dict[str, Any]:
    """The biggest spec the CRD allows around ``source`` and ``target``: every field
    set, every map and list full, every string at its maximum length.

    ``text`` fills the free texts (annotation values and the commit message) and
    ``image`` (printable ASCII) the images and model URIs: the JSON copies of the spec
    in annotations grow with the characters that need escaping.
    """

    def key(i: int) -> str:  # a 253-character prefix, "/" and a 63-character name
        return f"{i:02d}" + "p" * (MAX_NAME - 2) + "/" + "n" * (MAX_KEY - MAX_NAME - 1)

    def entry(i: int) -> dict[str, str]:
        return {
            "name": f"{i:02d}" + "c" * (MAX_NAME - 2),
            "predictor": f"{i:02d}" + "p" * (MAX_NAME - 2),
            "image": image * MAX_IMAGE,
            "modelUri": image * MAX_MODEL_URI,
        }

    return {
        "source": dict(source),
        "target": dict(target),
        "strategy": "Replace",
        "overrides": {
            "replicas": MAX_REPLICAS,
            "labels": {key(i): "v" * MAX_LABEL_VALUE for i in range(MAX_LABELS)},
            "annotations": {key(i): text * MAX_ANNOTATION_VALUE for i in range(MAX_ANNOTATIONS)},
            "components": [entry(i) for i in range(MAX_COMPONENTS)],
        },
        "verification": {"timeout": "3s".rjust(MAX_TIMEOUT_CHARS, "0")},
        "rollback": {"onFailure": True},
        "gitops": {"message": text * MAX_MESSAGE},
        "dryRun": False,
        "suspend": False,
    }


# Room is left for the test's unique suffix.
valid_names = st.one_of(
    OBJECT_NAMES, st.integers(MAX_NAME - 40, MAX_NAME - 12).map(lambda n: "n" * n)
)


def valid_cases() -> st.SearchStrategy[Case]:
    """Valid specs with a valid name (to which the test adds a unique suffix), and as
    many again with overrides, where most of the CRD's bounds are."""
    with_overrides = st.builds(
        lambda spec, more: {**spec, "overrides": more}, valid_specs(), overrides()
    )
    return st.builds(Case, valid_names, st.one_of(valid_specs(), with_overrides))


# --- faults -----------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """Set (or, with DELETE, remove) the value at ``path``, breaking ``faults``."""

    path: Path
    value: Any
    faults: tuple[Fault, ...]
    also_depends_on: tuple[Path, ...] = field(default=())

    @property
    def touches(self) -> tuple[Path, ...]:
        return (self.path, *self.also_depends_on)


DELETE = object()
FaultMaker = Callable[[Mapping[str, Any]], st.SearchStrategy[Edit]]


def _get(spec: Any, path: Path) -> Any:
    for part in path:
        if isinstance(part, int):
            spec = spec[part] if isinstance(spec, list) and part < len(spec) else None
        else:
            spec = spec.get(part) if isinstance(spec, dict) else None
    return spec


def apply_edit(spec: Any, edit: Edit) -> Any:
    """``spec`` with ``edit`` made (parents created as empty objects when missing)."""
    if not edit.path:
        return edit.value
    node = spec
    for part in edit.path[:-1]:
        child = node[part] if isinstance(part, int) else node.get(part)
        if child is None:
            child = node[part] = {}
        node = child
    last = edit.path[-1]
    if edit.value is DELETE:
        node.pop(last, None)
    else:
        node[last] = edit.value
    return spec


def _related(a: Path, b: Path) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def _edit(path: Path, value: Any, check: Check, what: str) -> Edit:
    return Edit(path, value, (Fault(field_name(path), check, what),))


VALID_ENTRY = {"name": "classifier", "image": "seldonio/sklearn-iris:1.5"}
MAP_LIMITS = {"labels": MAX_LABELS, "annotations": MAX_ANNOTATIONS}


def _put(spec: Mapping[str, Any], path: Path, value: Any, *faults: Fault) -> Edit:
    """Set ``path`` to ``value``: a component field in an otherwise valid entry
    (replacing the list), a label or annotation among the spec's others (as many as
    leave room for it)."""
    if path[:2] == ("overrides", "components") and len(path) == 4:
        return Edit(("overrides", "components"), [{**VALID_ENTRY, str(path[3]): value}], faults)
    if path[:2] in (("overrides", "labels"), ("overrides", "annotations")) and len(path) == 3:
        what, key = str(path[1]), str(path[2])
        others = [(k, v) for k, v in (_get(spec, path[:2]) or {}).items() if k != key]
        entries = {**dict(others[: MAP_LIMITS[what] - 1]), key: value}
        return Edit(path[:2], entries, faults)
    return Edit(path, value, faults)


# Schema types of every field, for wrong-type faults. Lists and maps are reached
# through ``components`` (index 0) and ``labels`` ("env").
STRING, INTEGER, BOOLEAN, OBJECT, ARRAY = "string", "integer", "boolean", "object", "array"
FIELD_TYPES: dict[Path, str] = {
    (): OBJECT,
    ("source",): OBJECT,
    ("source", "namespace"): STRING,
    ("source", "name"): STRING,
    ("source", "instance"): STRING,
    ("target",): OBJECT,
    ("target", "namespace"): STRING,
    ("target", "name"): STRING,
    ("target", "instance"): STRING,
    ("strategy",): STRING,
    ("overrides",): OBJECT,
    ("overrides", "replicas"): INTEGER,
    ("overrides", "labels"): OBJECT,
    ("overrides", "labels", "env"): STRING,
    ("overrides", "annotations"): OBJECT,
    ("overrides", "annotations", "env"): STRING,
    ("overrides", "components"): ARRAY,
    ("overrides", "components", 0): OBJECT,
    ("overrides", "components", 0, "name"): STRING,
    ("overrides", "components", 0, "predictor"): STRING,
    ("overrides", "components", 0, "image"): STRING,
    ("overrides", "components", 0, "modelUri"): STRING,
    ("verification",): OBJECT,
    ("verification", "timeout"): STRING,
    ("rollback",): OBJECT,
    ("rollback", "onFailure"): BOOLEAN,
    ("gitops",): OBJECT,
    ("gitops", "message"): STRING,
    ("dryRun",): BOOLEAN,
    ("suspend",): BOOLEAN,
}
_NOT_INTEGRAL = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda x: not x.is_integer()
)
WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    STRING: st.one_of(st.integers(), st.booleans(), _NOT_INTEGRAL, st.lists(SOME_TEXT, max_size=2)),
    INTEGER: st.one_of(
        st.sampled_from(["3", "1e3", "three", ""]), st.booleans(), _NOT_INTEGRAL, st.just([1])
    ),
    BOOLEAN: st.one_of(
        st.sampled_from(["true", "false", "yes", "on", ""]), st.integers(0, 1), st.just([True])
    ),
    OBJECT: st.one_of(SOME_TEXT, st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)),
    ARRAY: st.one_of(SOME_TEXT, st.integers(), st.dictionaries(SOME_TEXT, SOME_TEXT, max_size=2)),
}


@st.composite
def _wrong_type(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    path, kind = draw(st.sampled_from(sorted(FIELD_TYPES.items(), key=str)))
    value = draw(WRONG_VALUES[kind])
    fault = Fault(field_name(path), Check.BLOCKING, f"{kind} field given {type(value).__name__}")
    if kind == ARRAY and isinstance(value, dict) and value:
        # Pruning finds no property in a list: every key is an unknown field.
        unknown = [Fault(f"{field_name(path)}.{k}", Check.UNKNOWN, "key of a map") for k in value]
        return Edit(path, value, tuple(unknown))
    if path == ("overrides", "components", 0):
        return Edit(("overrides", "components"), [value], (fault,))
    return _put(spec, path, value, fault)


#: A source deployment's fields: both, or a registry instead (a CEL rule, not ``required``).
SOURCE_DEPLOYMENT: list[Path] = [("source", "namespace"), ("source", "name")]

REQUIRED: list[Path] = [
    ("source",),
    ("source", "namespace"),
    ("source", "name"),
    ("target",),
    ("target", "namespace"),
]


@st.composite
def _missing(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    how = draw(st.sampled_from([DELETE, None]))
    if draw(st.integers(0, 5)) == 0:
        # A component without its name (and a change, so only the name is missing).
        entry = {"image": "seldonio/sklearn-iris:1.5", "name": how}
        if how is DELETE:
            del entry["name"]
        nameless: Path = ("overrides", "components", 0, "name")
        fault = Fault(field_name(nameless), Check.BLOCKING, "component without a name")
        return Edit(("overrides", "components"), [entry], (fault,))
    if draw(st.integers(0, 9)) == 0:
        return _edit((), None, Check.BLOCKING, "no spec")
    path = draw(st.sampled_from(REQUIRED))
    if path in SOURCE_DEPLOYMENT:
        # Not required by the schema (a registry source has neither): CEL rules ask
        # for each, unless a registry is the source.
        return _edit(path, how, Check.RULE, "source deployment without namespace or name")
    return _edit(path, how, Check.BLOCKING, "required field missing")


@st.composite
def _unknown_strategy(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    value = draw(
        st.one_of(
            st.sampled_from(["replace", "REPLACE", "Replace ", "", "BlueGreen"]),
            SOME_TEXT.filter(lambda s: s not in ("Replace", "Canary")),
        )
    )
    return _edit(("strategy",), value, Check.BLOCKING, "unknown strategy")


def _spoiled(draw: st.DrawFn, base: str, bad: list[str]) -> str:
    """``base`` with one of ``bad`` put at its start, in its middle or at its end."""
    at = draw(st.sampled_from([0, len(base) // 2, len(base)]))
    return base[:at] + draw(st.sampled_from(bad)) + base[at:]


# Label keys a value fault is put under: the key is part of the field's name.
FAULTY_LABEL_KEYS = st.sampled_from(["env", "app.kubernetes.io/name", "a..b/C_d.e"])
_ODD = ["\x00", "\u212a", "\u3000", "😀"]  # NUL, the Kelvin sign (K), a wide space, an emoji
_IN_NAMESPACES = [*"ABCZ_ /:é@-.", *_ODD]
_IN_NAMES = [*"ABZ_ /é@-.", "..", ".-", "-.", *_ODD]  # a dot only between two alphanumerics
_IN_COMPONENTS = [*"-_. /:é@\t", *_ODD]  # "-", "_" and "." only inside
# Fields with a pattern: the pattern, the maximum length and what may break them.
PATTERNED: dict[Path, tuple[str, int, list[str]]] = {
    ("source", "namespace"): (DNS_LABEL, MAX_NAMESPACE, _IN_NAMESPACES),
    ("source", "name"): (SUBDOMAIN, MAX_NAME, _IN_NAMES),
    ("source", "instance"): (DNS_LABEL, MAX_NAMESPACE, _IN_NAMESPACES),
    ("target", "namespace"): (DNS_LABEL, MAX_NAMESPACE, _IN_NAMESPACES),
    ("target", "name"): (SUBDOMAIN, MAX_NAME, _IN_NAMES),
    ("target", "instance"): (DNS_LABEL, MAX_NAMESPACE, _IN_NAMESPACES),
    ("overrides", "components", 0, "name"): (COMPONENT, MAX_NAME, _IN_COMPONENTS),
    ("overrides", "components", 0, "predictor"): (COMPONENT, MAX_NAME, _IN_COMPONENTS),
    ("overrides", "components", 0, "image"): (PRINTABLE, MAX_IMAGE, [*' \t\n\x7fé<>&"\\', *_ODD]),
    ("overrides", "components", 0, "modelUri"): (PRINTABLE, MAX_MODEL_URI, [*" \n\x7f<&", *_ODD]),
    ("overrides", "annotations", "env"): (FREE_TEXT, MAX_ANNOTATION_VALUE, [*"\x00\x01\n\t\x7f"]),
    ("gitops", "message"): (MESSAGE_TEXT, MAX_MESSAGE, [*"\x00\x1b\n\r\x7f"]),
    ("overrides", "labels", "env"): (LABEL_VALUE, MAX_LABEL_VALUE, [*_IN_COMPONENTS, "\n"]),
}


@st.composite
def _bad_pattern(
    draw: st.DrawFn, spec: Mapping[str, Any], paths: Collection[Path] = tuple(PATTERNED)
) -> Edit:
    path = draw(st.sampled_from(sorted(paths, key=str)))
    pattern, limit, bad = PATTERNED[path]
    if path[:2] == ("overrides", "labels"):
        path = (*path[:2], draw(FAULTY_LABEL_KEYS))
    value = _spoiled(draw, draw(st.text(LOWER_ALNUM, min_size=1, max_size=20)), bad)
    if draw(st.integers(0, 5)) == 0:
        value = ""  # minLength 1 and the pattern (an empty label value is valid)
    if matches(pattern, value):  # "_" inside a component name, "." inside a name
        return _put(spec, path, value)
    check = Check.BLOCKING if len(value) > limit else Check.SCHEMA
    return _put(spec, path, value, Fault(field_name(path), check, f"{value!r} mismatches"))


_BAD_KEYS = ["", "/", "a/", "/a", "a/b/c", "-a", "a-", "_a", "A.b/c", "a_b/c", "a b", "a\n",
             ".a/b", "a./b", "a/.b", "a:b", "\u212a", "é"]  # fmt: skip


@st.composite
def _bad_key(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    """A label or annotation key, most likely one the CRD's rule refuses: not
    ``[prefix/]name``, or longer than 317 characters."""
    what = draw(st.sampled_from(sorted(MAP_LIMITS)))
    kind = draw(st.sampled_from(["listed", "any", "spoiled", "long", "long prefixed"]))
    if kind == "listed":
        key = draw(st.sampled_from(_BAD_KEYS))
    elif kind == "any":
        key = draw(SOME_TEXT)
    elif kind == "spoiled":
        key = _spoiled(draw, draw(keys()), [*"/ :@_-.A", *_ODD])
    elif kind == "long":
        key = draw(stretched(_NAME_PART, MAX_KEY + 1, MAX_KEY + 40))
    else:  # a prefix of about 253 characters, and a name of about 63
        prefix = draw(stretched(_KEY_PREFIXES, MAX_NAME - 2, MAX_NAME))
        key = prefix + "/" + draw(stretched(_NAME_PART, 60, 70))
    path = ("overrides", what, key)
    if len(key) <= MAX_KEY and matches(KEY, key):
        return _put(spec, path, "v")
    return _put(spec, path, "v", Fault(field_name(path[:2]), Check.RULE, f"key {key[:40]!r}"))


# Every length-limited string, with its maximum.
LIMITED: dict[Path, int] = {
    **{path: limit for path, (_, limit, _) in PATTERNED.items()},
    ("overrides", "annotations", "env"): MAX_ANNOTATION_VALUE,
    ("gitops", "message"): MAX_MESSAGE,
    ("verification", "timeout"): MAX_TIMEOUT_CHARS,
}


@st.composite
def _too_long(
    draw: st.DrawFn, spec: Mapping[str, Any], paths: Collection[Path] = tuple(LIMITED)
) -> Edit:
    path = draw(st.sampled_from(sorted(paths, key=str)))
    limit = LIMITED[path]
    size = draw(st.integers(limit + 1, limit + 40))
    if path in PATTERNED:
        value = "a" * size  # only the length is wrong
    elif path == ("verification", "timeout"):
        value = "1s" * (size // 2 + 1)
    else:
        value = draw(st.characters()) * size  # characters, not bytes, count
    if path[:2] == ("overrides", "labels"):
        path = (*path[:2], draw(FAULTY_LABEL_KEYS))
    return _put(spec, path, value, Fault(field_name(path), Check.BLOCKING, f"{size} characters"))


LABEL_VALUE_PATH: Path = ("overrides", "labels", "env")
ANNOTATION_VALUE_PATH: Path = ("overrides", "annotations", "env")


def _bad_entry(spec: Mapping[str, Any]) -> st.SearchStrategy[Edit]:
    """A label value that breaks the label syntax or is too long, or an annotation value
    too long (so these are drawn more often than the makers above alone draw them)."""
    return st.one_of(
        _bad_pattern(spec, [LABEL_VALUE_PATH]),
        _too_long(spec, [LABEL_VALUE_PATH, ANNOTATION_VALUE_PATH]),
    )


@st.composite
def _empty(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    path = draw(
        st.sampled_from(
            [
                ("overrides", "components", 0, "name"),
                ("overrides", "components", 0, "predictor"),
                ("overrides", "components", 0, "image"),
                ("overrides", "components", 0, "modelUri"),
                ("gitops", "message"),
            ]
        )
    )
    return _put(spec, path, "", Fault(field_name(path), Check.SCHEMA, "empty string"))


@st.composite
def _replicas_out_of_range(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    value = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_REPLICAS + 1)))
    # Beyond int64 the decoder reads a float: also a wrong type.
    check = Check.BLOCKING if not -(2**63) <= value < 2**63 else Check.SCHEMA
    return _edit(("overrides", "replicas"), value, check, f"{value} replicas")


@st.composite
def _bad_timeout(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    path = ("verification", "timeout")
    kind = draw(st.sampled_from(["unparsable", "too short", "too long", "overflow"]))
    if kind == "unparsable":
        value = draw(
            st.one_of(
                st.sampled_from(
                    ["-5m", "3d", "1.5.5s", "", "10 m", "1h-5m", "5", "m", ".5s", "5.s",
                     "1us", "1µs", "1ns", "PT5M", "1H", "+1h", "1e3s", "\uff11s"]
                ),
                SOME_TEXT.filter(lambda s: not _matches_duration(s)),
            )
        )  # fmt: skip
        check = Check.SCHEMA
    elif kind == "too short":
        value = draw(durations(0, MIN_TIMEOUT_MS - 1))
        check = Check.RULE
    elif kind == "too long":
        value = draw(durations(MAX_TIMEOUT_MS + 1, 1000 * MAX_TIMEOUT_MS))
        check = Check.RULE
    else:  # matches the pattern, but is no duration Go can hold
        value = f"{draw(st.integers(3_000_000, 10**20))}h"
        check = Check.RULE
    if len(value) > MAX_TIMEOUT_CHARS:
        check = Check.BLOCKING
    return _edit(path, value, check, f"timeout {value!r} ({kind})")


def _matches_duration(text: str) -> bool:
    return re.fullmatch(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+", text) is not None


@st.composite
def _target_is_source(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    source = spec["source"]
    target: dict[str, Any] = {"namespace": source["namespace"]}
    if draw(st.booleans()):
        target["name"] = source["name"]
    if "instance" in source and draw(st.booleans()):
        target["instance"] = source["instance"]
    fault = Fault("spec.target", Check.RULE, "target equals source")
    return Edit(("target",), target, (fault,), also_depends_on=(("source",),))


@st.composite
def _component_without_change(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    existing = list(_get(spec, ("overrides", "components")) or [])[:3]
    index = draw(st.integers(0, len(existing)))
    entry: dict[str, Any] = {"name": draw(COMPONENT_NAMES)}
    if draw(st.booleans()):
        entry["predictor"] = "default"
    if draw(st.booleans()):
        entry[draw(st.sampled_from(["image", "modelUri"]))] = None  # null is dropped
    entries = [*existing[:index], entry, *existing[index:]]
    path = ("overrides", "components", index)
    fault = Fault(field_name(path), Check.RULE, "component override changes nothing")
    return Edit(("overrides", "components"), entries, (fault,))


TOO_MANY = {"labels": MAX_LABELS, "annotations": MAX_ANNOTATIONS, "components": MAX_COMPONENTS}


@st.composite
def _too_many(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    what = draw(st.sampled_from(sorted(TOO_MANY)))
    count = draw(st.integers(TOO_MANY[what] + 1, TOO_MANY[what] + 5))
    value: Any
    if what == "components":
        value = [{"name": f"c{i}", "image": "img"} for i in range(count)]
    else:
        value = {f"key-{i}": "v" for i in range(count)}
    return _edit(("overrides", what), value, Check.BLOCKING, f"{count} {what}")


# Objects of the schema and the properties each declares.
OBJECTS: dict[Path, frozenset[str]] = {
    (): frozenset(str(p[0]) for p in FIELD_TYPES if len(p) == 1),
    ("source",): frozenset({"namespace", "name", "instance"}),
    ("target",): frozenset({"namespace", "name", "instance"}),
    ("overrides",): frozenset({"replicas", "labels", "annotations", "components"}),
    ("overrides", "components", 0): frozenset({"name", "predictor", "image", "modelUri"}),
    ("verification",): frozenset({"timeout"}),
    ("rollback",): frozenset({"onFailure"}),
    ("gitops",): frozenset({"message"}),
}
FIELD_NAMES = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", fullmatch=True)


@st.composite
def _unknown_field(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    parent = draw(st.sampled_from(sorted(OBJECTS, key=str)))
    name = draw(FIELD_NAMES.filter(lambda n: n not in OBJECTS[parent]))
    value = draw(st.one_of(SOME_TEXT, st.integers(), st.booleans(), st.just({"nested": 1})))
    fault = Fault(field_name((*parent, name)), Check.UNKNOWN, "unknown field")
    if parent[:2] == ("overrides", "components"):
        return _put(spec, (*parent, name), value, fault)
    if parent and not isinstance(_get(spec, parent), dict):
        # The parent is absent or null: make it an object holding only the unknown field.
        return Edit(parent, {name: value}, (fault,))
    return Edit((*parent, name), value, (fault,))


@st.composite
def _oversized(draw: st.DrawFn, spec: Mapping[str, Any]) -> Edit:
    # kubectl's last-applied-configuration annotation copies the spec: the server
    # refuses that as well as the label value.
    size = draw(st.integers(MAX_ANNOTATIONS_BYTES, MAX_ANNOTATIONS_BYTES + 1000))
    faults = (
        Fault("metadata.annotations", Check.BLOCKING, f"a {size}-byte label value"),
        Fault(field_name(("overrides", "labels", "huge")), Check.BLOCKING, f"{size} characters"),
    )
    return _put(spec, ("overrides", "labels", "huge"), "x" * size, *faults)


SPEC_FAULTS: list[FaultMaker] = [
    _wrong_type,
    _missing,
    _unknown_strategy,
    _bad_pattern,
    _bad_key,
    _bad_entry,
    _too_long,
    _empty,
    _replicas_out_of_range,
    _bad_timeout,
    _target_is_source,
    _component_without_change,
    _too_many,
    _unknown_field,
    _oversized,
]


@st.composite
def bad_names(draw: st.DrawFn) -> tuple[str, Fault]:
    """A metadata.name the API refuses, and how."""
    kind = draw(st.sampled_from(["uppercase", "too long", "bad character", "kubectl"]))
    base = draw(valid_names)
    if kind == "uppercase":
        at = draw(st.integers(0, len(base)))
        name = base[:at] + draw(st.sampled_from("ABZ")) + base[at:]
    elif kind == "too long":
        name = (base + "a" * MAX_NAME)[: draw(st.integers(MAX_NAME + 1, MAX_NAME + 50))]
    elif kind == "bad character":
        at = draw(st.integers(0, len(base)))
        name = base[:at] + draw(st.sampled_from(list("_ :#?é") + ["..", ".-"])) + base[at:]
    else:
        name, message = draw(
            st.sampled_from(
                [
                    ("", "resource name may not be empty"),
                    (base + "/x", "may not contain '/'"),
                    (base + "%", "may not contain '%'"),
                    (".", "may not be '.'"),
                    ("..", "may not be '..'"),
                ]
            )
        )
        return name, Fault(message, Check.CLIENT, "kubectl refuses the name")
    return name, Fault("metadata.name", Check.SCHEMA, f"name {name!r}")


@st.composite
def broken_cases(draw: st.DrawFn) -> Case:
    """A valid spec and name with one to three independent faults put in."""
    base = draw(valid_specs())
    name, faults = draw(valid_names), []
    if draw(st.integers(0, 4)) == 0:
        name, name_fault = draw(bad_names())
        faults.append(name_fault)
    makers = draw(st.lists(st.sampled_from(SPEC_FAULTS), min_size=0 if faults else 1, max_size=3))
    spec: Any = copy.deepcopy(base)
    touched: list[Path] = []
    for make in makers:
        edit = draw(make(base))  # drawn against the valid spec; applied if independent
        if any(_related(a, b) for a in edit.touches for b in touched):
            continue
        spec = apply_edit(spec, edit)
        touched.extend(edit.touches)
        faults.extend(edit.faults)
    return Case(name, spec, tuple(faults))


def cases() -> st.SearchStrategy[Case]:
    """Valid and broken cases, about one in three valid."""
    return st.one_of(valid_cases(), broken_cases(), broken_cases())
