"""The placeholders of an analysis template's query and how they are filled in
(docs/contract.md, "Placeholders"): ``{{target}}``, ``{{namespace}}``,
``{{canary}}``, ``{{stable}}``, ``{{predictor}}``, ``{{interval}}``.

Shared and pure, importing nothing of the operator: the core fills a query in to
measure it, and the kubectl plugin's dashboard fills it in the same way to draw
the query over a run (the plugin imports nothing else of the operator).
"""

from __future__ import annotations

from collections.abc import Mapping


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``{{key}}`` of ``values`` replaced by its value."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def query_values(
    *,
    target: str,
    namespace: str,
    interval: str,
    canary: str | None = None,
    stable: str | None = None,
    predictor: str | None = None,
) -> dict[str, str]:
    """What a query's placeholders become: the target's name and namespace, the
    template's interval, and, in a canary's analysis, the canary's and the stable
    predictor's names and whom a comparison's query measures (``predictor``). A
    placeholder given None is left as written."""
    values = {
        "predictor": predictor,
        "target": target,
        "namespace": namespace,
        "canary": canary,
        "stable": stable,
        "interval": interval,
    }
    return {key: value for key, value in values.items() if value is not None}
