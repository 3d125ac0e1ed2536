"""Unit tests of the pure row functions: flattening, timestamps, PII, arrow typing."""

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from concord_pipelines.concord.records import apply_pii, flatten, hash_value, rows_to_arrow, to_utc
from concord_pipelines.concord.settings import BIGINT, JSON, TEXT, TIMESTAMP

MOMENT = datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)


def test_flatten_nested_objects_into_snake_case_columns():
    item = {
        "id": "e1",
        "consentDate": "2019-08-24T14:15:22Z",
        "session": {"ipAddress": "::1", "userAgent": "UA", "geography": "US-CA"},
        "results": {"categories": {"do_not_sell": 2, "analytics": 1}},
        "subcategory": ["analytics"],
        "empty": {},
    }
    row = flatten(item)
    assert row == {
        "id": "e1",
        "consent_date": "2019-08-24T14:15:22Z",
        "session__ip_address": "::1",
        "session__user_agent": "UA",
        "session__geography": "US-CA",
        "results__categories__do_not_sell": 2,
        "results__categories__analytics": 1,
        "subcategory": ["analytics"],
    }


@pytest.mark.parametrize(
    "value",
    [
        "2019-08-24T14:15:22Z",
        "2019-08-24T14:15:22.000Z",
        "2019-08-24T16:15:22+02:00",
        "2019-08-24T14:15:22",  # naive: read as UTC
        1566656122,  # epoch seconds
        1566656122000,  # epoch milliseconds
        "1566656122000",
        "2019-08-24T14:15:22.000000000Z",  # nanoseconds
    ],
)
def test_to_utc_accepts_iso_and_epoch_seconds_or_milliseconds(value):
    assert to_utc(value) == MOMENT


def test_to_utc_rejects_garbage_and_keeps_null():
    assert to_utc(None) is None
    assert to_utc("") is None
    with pytest.raises(ValueError):
        to_utc("yesterday")
    with pytest.raises(ValueError):
        to_utc(True)


def test_all_null_page_keeps_declared_types():
    table = rows_to_arrow([{"id": "a"}], {"id": TEXT, "version": BIGINT, "consent_date": TIMESTAMP, "subcategory": JSON})
    assert table.schema.field("version").type == pa.int64()
    assert table.schema.field("consent_date").type == pa.timestamp("us", tz="UTC")
    assert table.column("subcategory").to_pylist() == [None]


def test_mixed_timestamp_forms_in_one_column():
    table = rows_to_arrow(
        [{"d": "2019-08-24T14:15:22Z"}, {"d": 1566656122}, {"d": 1566656122000}, {"d": None}], {"d": TIMESTAMP}
    )
    assert table.column("d").to_pylist() == [MOMENT, MOMENT, MOMENT, None]


def test_unknown_fields_are_kept_and_lists_become_json_text():
    table = rows_to_arrow([{"id": "a", "new_field": 3, "tags": ["x", "y"]}, {"id": "b"}], {"id": TEXT, "subcategory": JSON})
    assert table.column_names == ["id", "subcategory", "new_field", "tags"]
    assert table.column("new_field").to_pylist() == [3, None]
    assert table.column("tags").to_pylist() == ['["x","y"]', None]


def test_mixed_type_new_field_falls_back_to_text():
    table = rows_to_arrow([{"x": 1}, {"x": "one"}], {})
    assert table.column("x").to_pylist() == ["1", "one"]


def test_pii_hash_is_keyed_and_stable_and_drop_removes():
    row = {"session__ip_address": "10.0.0.1", "user__email": "a@b.c", "id": "1"}
    hashed = dict(row)
    apply_pii(hashed, "hash", b"salt")
    assert hashed["id"] == "1"
    assert hashed["session__ip_address"] == hash_value("10.0.0.1", b"salt")
    assert hashed["session__ip_address"] != hash_value("10.0.0.1", b"other")
    assert "10.0.0.1" not in hashed.values() and len(hashed["user__email"]) == 64
    dropped = dict(row)
    apply_pii(dropped, "drop", None)
    assert dropped == {"id": "1"}
    kept = dict(row)
    apply_pii(kept, "keep", None)
    assert kept == row


def test_value_that_does_not_fit_its_declared_type_names_the_column():
    with pytest.raises(ValueError, match="'version' is declared bigint"):
        rows_to_arrow([{"version": "two"}], {"version": BIGINT})
