"""The arrow page path (pyarrow's JSON reader) must give exactly what the dict path gives."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from concord_pipelines.concord import settings
from concord_pipelines.concord.client import ClientOptions, ConcordClient, ResourceStats
from concord_pipelines.concord.records import arrow_to_columns, flatten, read_page_arrow, rows_to_arrow
from concord_pipelines.serve import BackgroundServer

ITEMS = [
    {
        "id": "a",
        "consentDate": "2019-08-24T14:15:22.123Z",
        "dateUpdated": 1566656122000,  # epoch ms where an ISO string is documented
        "session": {"ipAddress": "::1", "geography": "US-CA"},
        "subcategory": ["analytics", "marketing"],
        "version": 2,
        "newField": {"nested": 1, "list": [{"x": 1}]},
    },
    {
        "id": "b",
        "consentDate": None,
        "dateUpdated": 1566656122,  # epoch seconds
        "session": {"ipAddress": "10.0.0.1", "geography": None},
        "subcategory": [],
        "version": 1,
        "newField": {"nested": 2, "list": []},
    },
]


def body(items: list[dict]) -> bytes:
    return orjson.dumps({"offset": 0, "count": len(items), "total": 7, "items": items})


def dict_path(items: list[dict], **kwargs) -> pa.Table:
    return rows_to_arrow([flatten(i) for i in items], settings.CONSENT_EVENTS.columns, **kwargs)


def test_arrow_path_equals_dict_path():
    total, raw = read_page_arrow(body(ITEMS))
    assert total == 7
    fast = arrow_to_columns(raw, settings.CONSENT_EVENTS.columns)
    slow = dict_path(ITEMS)
    assert fast.column_names == slow.column_names
    assert fast.to_pylist() == slow.to_pylist()
    assert fast.schema.field("date_updated").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize("subcategories", [
    [["a", "b"], [], None, ["é", "x y", "\u2028", "\x7f"]],  # arrow builds the JSON text itself
    [["q\"uote"], ["back\\slash"], ["new\nline", "tab\t"], ["ok", None]],  # items that need escaping or null
])
def test_json_text_of_string_lists_equals_the_dict_path(subcategories: list) -> None:
    items = [{"id": str(n), "subcategory": value} for n, value in enumerate(subcategories)]
    fast = arrow_to_columns(read_page_arrow(body(items))[1], settings.CONSENT_EVENTS.columns)
    assert fast.column("subcategory").to_pylist() == dict_path(items).column("subcategory").to_pylist()


def test_arrow_path_drops_and_hashes_like_the_dict_path():
    _, raw = read_page_arrow(body(ITEMS))
    dropped = arrow_to_columns(raw, settings.CONSENT_EVENTS.columns, drop=settings.PII_COLUMNS)
    assert "session__ip_address" not in dropped.column_names
    hashed = arrow_to_columns(raw, settings.CONSENT_EVENTS.columns, hashed=settings.PII_COLUMNS, salt=b"s")
    assert all(len(v) == 64 for v in hashed.column("session__ip_address").to_pylist())


def test_empty_page_and_garbage():
    total, raw = read_page_arrow(body([]))
    assert total == 7 and raw.num_rows == 0
    with pytest.raises(pa.ArrowInvalid):
        read_page_arrow(b"<html>not the API</html>")
    with pytest.raises(pa.ArrowInvalid):
        read_page_arrow(body(ITEMS)[:100])


def test_page_arrow_cannot_read_falls_back_to_dicts_over_http():
    mixed = [{"id": "a", "version": 1}, {"id": "b", "version": "two"}]  # a field with mixed types

    async def page(request):
        return Response(body(mixed), media_type="application/json")

    app = Starlette(routes=[Route("/items", page)])
    with BackgroundServer(app) as server:
        client = ConcordClient(ClientOptions(server.url, "key", "org", max_retries=0))
        with pytest.raises(pa.ArrowInvalid):
            read_page_arrow(body(mixed))
        got = client.get_page("/items", {}, 0, ResourceStats(), arrow=True)
        client.close()
    assert got.table is None and [i["id"] for i in got.items] == ["a", "b"] and got.total == 7
