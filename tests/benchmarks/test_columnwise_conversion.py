"""The column-wise page conversion (the fast path) must give exactly what flatten + rows_to_arrow give.

It returns None for pages it cannot reproduce exactly, and the row-wise path then handles them.
"""

from __future__ import annotations

import copy
import random

import pyarrow as pa
import pytest

from concord_pipelines.concord import settings
from concord_pipelines.concord.records import apply_pii, flatten, items_to_arrow, rows_to_arrow
from concord_pipelines.concord.source import batched_tables

SALT = b"salt"


def event(i: int) -> dict:
    return {
        "id": f"e{i}",
        "concordId": f"c{i % 7}",
        "consentAction": "accepted",
        "consentDate": f"2026-10-24T18:28:{i % 60:02d}.398Z",
        "dateCreated": "2026-10-24T18:28:27.799Z",
        "dateUpdated": 1761330507799 + i,
        "session": {"id": f"s{i}", "ipAddress": "162.166.6.76", "geography": "US-CO", "userAgent": "UA"},
        "subcategory": ["analytics", "marketing"][: i % 3],
        "label": "Analytics cookies",
        "version": i % 4 + 1,
    }


def row_wise(items: list[dict], mode: str) -> pa.Table:
    rows = []
    for item in items:
        row = flatten(item)
        apply_pii(row, mode, SALT)
        rows.append(row)
    return rows_to_arrow(rows, settings.CONSENT_EVENTS.columns, drop=settings.PII_COLUMNS if mode == "drop" else ())


def column_wise(items: list[dict], mode: str) -> pa.Table | None:
    return items_to_arrow(
        items,
        settings.CONSENT_EVENTS.columns,
        drop=settings.PII_COLUMNS if mode == "drop" else (),
        hashed=settings.PII_COLUMNS if mode == "hash" else (),
        salt=SALT,
    )


def oddities() -> list[dict]:
    items = [event(i) for i in range(40)]
    items[0]["session"] = {}
    del items[1]["session"]
    items[2]["version"] = "7"
    items[3]["version"] = True
    items[4]["label"] = 5
    items[5]["subcategory"] = None
    del items[6]["id"]
    items[7]["dateUpdated"] = "2026-10-24T18:28:27Z"
    items[8]["session"] = {"id": None}
    items[9]["expirationDate"] = None
    return items


@pytest.mark.parametrize("mode", ["keep", "drop", "hash"])
@pytest.mark.parametrize("items", [[], [event(i) for i in range(100)], oddities()], ids=["empty", "plain", "oddities"])
def test_same_table_as_row_wise(items, mode):
    fast = column_wise(items, mode)
    assert fast is not None
    assert fast.equals(row_wise(items, mode))


@pytest.mark.parametrize(
    "change",
    [
        lambda items: items[0].update(newField=1),  # not declared: kept by the row-wise path
        lambda items: items[1]["session"].update(extra={"x": 1}),
        lambda items: items[2].update(subcategory={"a": 1}),  # an object where a leaf is declared
        lambda items: items[3].update(session=None),  # a null where an object is expected: a column `session`
        lambda items: items[4].update(session__id="x"),  # two keys, one column name
    ],
)
def test_pages_it_cannot_reproduce_go_row_wise(change):
    items = [event(i) for i in range(10)]
    change(items)
    assert column_wise(copy.deepcopy(items), "keep") is None


def test_random_pages_match():
    rng = random.Random(5)
    for _ in range(30):
        items = [event(rng.randrange(1000)) for _ in range(rng.randrange(1, 30))]
        for item in items:
            for key in list(item):
                if rng.random() < 0.1:
                    del item[key]
        assert column_wise(items, "keep").equals(row_wise(items, "keep"))


def test_batches_join_pages_without_mixing_schemas():
    a = pa.table({"x": [1, 2]})
    b = pa.table({"x": [3]})
    other = pa.table({"x": [4], "y": ["z"]})
    out = list(batched_tables([a, b, other, a, a, a], min_rows=3))
    assert [t.num_rows for t in out] == [3, 1, 4, 2]
    assert out[0].column("x").to_pylist() == [1, 2, 3]
    assert out[1].schema == other.schema
