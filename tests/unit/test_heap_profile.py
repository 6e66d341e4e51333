"""``make bench --profile``'s attribution: which owner and line an allocation is charged to."""

from __future__ import annotations

from tests.harness.heap_profile import IMPORTS, JSON_PARSING, STDLIB, attribute, growth

SITE = "/venv/lib/python3.11/site-packages"
KOPF_FETCH = (f"{SITE}/kopf/_cogs/clients/api.py", 120)
AIOHTTP_JSON = (f"{SITE}/aiohttp/client_reqrep.py", 1300)
JSON_DECODE = ("/usr/lib/python3.11/json/decoder.py", 353)
CONTROLLER = ("/work/wt/operator/control/controller.py", 310)
ASYNCIO = ("/usr/lib/python3.11/asyncio/events.py", 80)


def test_a_block_allocated_inside_json_is_json_parsing_charged_at_the_line_that_parsed() -> None:
    charged = attribute([ASYNCIO, KOPF_FETCH, AIOHTTP_JSON, JSON_DECODE])

    assert charged.owner == JSON_PARSING
    assert charged.site == AIOHTTP_JSON


def test_a_block_is_charged_to_the_innermost_known_package() -> None:
    charged = attribute([ASYNCIO, KOPF_FETCH, CONTROLLER, ("/usr/lib/python3.11/copy.py", 9)])

    assert (charged.owner, charged.site) == ("our code", CONTROLLER)


def test_kopf_is_kopf() -> None:
    assert attribute([ASYNCIO, KOPF_FETCH]).owner == "Kopf"


def test_a_block_of_no_known_package_is_the_standard_library_or_an_import() -> None:
    assert attribute([ASYNCIO]).owner == STDLIB
    assert attribute([("<frozen importlib._bootstrap>", 1), ASYNCIO]).owner == IMPORTS


def test_growth_sums_by_owner_and_site() -> None:
    summed = growth(
        [
            (1000, 10, [KOPF_FETCH]),
            (500, 5, [KOPF_FETCH]),
            (-200, -2, [CONTROLLER]),
            (300, 1, [KOPF_FETCH, AIOHTTP_JSON, JSON_DECODE]),
        ]
    )

    assert summed.by_owner == {"Kopf": 1500, "our code": -200, JSON_PARSING: 300}
    assert summed.blocks_by_owner["Kopf"] == 15
    assert summed.by_site[("Kopf", KOPF_FETCH)] == 1500
