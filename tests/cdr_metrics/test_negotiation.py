"""Version negotiation and CDS errors: the sandbox's rules, the client's one-line messages."""

from __future__ import annotations

import httpx
import pytest

from concord_pipelines.cdr_metrics.client import HolderClient
from concord_pipelines.cdr_metrics.config import holder_from_mapping
from concord_pipelines.errors import ApiError
from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, CdsError, HolderState, negotiate

from .conftest import holder_config

URL = "/cds-au/v1/admin/metrics"


@pytest.mark.parametrize(
    ("x_v", "x_min_v", "supported", "served"),
    [
        ("5", "2", (2, 3, 4, 5), 5),
        ("9", "2", (2, 3, 4, 5), 5),  # highest supported in range
        ("5", None, (2, 3, 4, 5), 5),
        ("3", None, (2, 3, 4, 5), 3),
        ("3", "5", (2, 3, 4, 5), 3),  # x-min-v >= x-v: ignored
        ("4", "4", (2, 3, 4, 5), 4),
        ("5", "2", (2, 3), 3),
        ("5", "1", (1, 6), 1),
    ],
)
def test_negotiate_serves_highest_in_range(
    x_v: str, x_min_v: str | None, supported: tuple[int, ...], served: int
) -> None:
    assert negotiate(x_v, x_min_v, supported) == served


@pytest.mark.parametrize(
    ("x_v", "x_min_v", "status", "code"),
    [
        (None, None, 400, "Header/InvalidVersion"),
        ("", None, 400, "Header/InvalidVersion"),
        ("abc", None, 400, "Header/InvalidVersion"),
        ("0", None, 400, "Header/InvalidVersion"),
        ("-3", None, 400, "Header/InvalidVersion"),
        ("2.5", None, 400, "Header/InvalidVersion"),
        ("5", "two", 400, "Header/InvalidVersion"),
        ("5", "0", 400, "Header/InvalidVersion"),
        ("5", "2", 406, "Header/UnsupportedVersion"),  # supported only 6..6
        ("7", "7", 406, "Header/UnsupportedVersion"),
    ],
)
def test_negotiate_errors(x_v: str | None, x_min_v: str | None, status: int, code: str) -> None:
    with pytest.raises(CdsError) as err:
        negotiate(x_v, x_min_v, (6,))
    assert (err.value.status, err.value.code) == (status, code)


def test_http_negotiation_and_period(holder: CdrHolderServer) -> None:
    with httpx.Client(base_url=holder.url) as http:
        r = http.get(URL, headers={"x-v": "4", "x-min-v": "9"})
        assert r.status_code == 200 and r.headers["x-v"] == "4"
        r = http.get(URL, headers={"x-v": "x"})
        assert r.status_code == 400
        assert r.json()["errors"][0]["code"] == "urn:au-cds:error:cds-all:Header/InvalidVersion"
        r = http.get(URL, headers={"x-v": "5", "x-min-v": "1.0"})
        assert r.status_code == 400
        r = http.get(URL, params={"period": "WEEKLY"}, headers={"x-v": "5"})
        assert r.status_code == 400
        assert r.json()["errors"][0]["code"] == "urn:au-cds:error:cds-all:Field/Invalid"
        current = http.get(URL, params={"period": "CURRENT"}, headers={"x-v": "2"}).json()["data"]
        assert "currentDay" in current["sessionCount"] and "previousDays" not in current["sessionCount"]
        historic = http.get(URL, params={"period": "HISTORIC"}, headers={"x-v": "2"}).json()["data"]
        assert (
            "currentDay" not in historic["sessionCount"]
            and len(historic["sessionCount"]["previousDays"]) == 7
        )


def _client(server: CdrHolderServer, name: str = "bank") -> HolderClient:
    return HolderClient(holder_from_mapping(holder_config(server, name)))


def test_unsupported_range_is_one_clear_line() -> None:
    state = HolderState(name="modern", supported_versions=(6,))
    with CdrHolderServer(state) as server, _client(server, "modern") as c, pytest.raises(ApiError) as err:
        c.get_metrics(5, 2, "ALL")
    assert str(err.value) == "holder modern supports versions 6..6; asked for 2..5"


def test_invalid_version_and_field_messages(holder: CdrHolderServer) -> None:
    message = r"^holder bank answered HTTP 400 Field/Invalid: period must be"
    with _client(holder) as c, pytest.raises(ApiError, match=message):
        c.get_metrics(5, 2, "WEEKLY")


def test_client_checks_served_version() -> None:
    def answer(headers: dict[str, str]) -> httpx.MockTransport:
        return httpx.MockTransport(lambda req: httpx.Response(200, json={"data": {}}, headers=headers))

    holder = holder_from_mapping({"name": "odd", "base_url": "https://odd.example"})
    for headers, message in [
        ({}, "holder odd: the response has no x-v header"),
        ({"x-v": "six"}, "holder odd: x-v response header is not an integer"),
        ({"x-v": "1"}, "holder odd served version 1; asked for 2..5"),
    ]:
        with HolderClient(holder, transport=answer(headers)) as c, pytest.raises(ApiError, match=message):
            c.get_metrics(5, 2, "ALL")
    with (
        HolderClient(holder, transport=answer({"x-v": "6"})) as c,
        pytest.raises(ApiError, match="cannot parse"),
    ):
        c.get_metrics(6, 2, "ALL")
    with HolderClient(holder, transport=answer({"x-v": "3"})) as c:
        assert c.get_metrics(3, 9, "ALL").version == 3  # x-min-v >= x-v is ignored on our side too


def test_holder_app_mounted_under_a_prefix(state: HolderState) -> None:
    """The sandbox mounts the holder under /cdr; token audience and URLs follow the prefix."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from concord_pipelines.sandbox.cdr_holder import create_holder_app
    from concord_pipelines.serve import BackgroundServer

    from .keys import new_key, private_pem, public_pem

    key = new_key("PS256")
    state.clients = {"register": public_pem(key)}
    app = Starlette(routes=[Mount("/cdr", app=create_holder_app(state))])
    with BackgroundServer(app) as srv:
        base = f"{srv.url}/cdr"
        holder = holder_from_mapping(
            {
                "name": "bank",
                "base_url": base,
                "token_endpoint": f"{base}/token",
                "client_id": "register",
                "private_key": private_pem(key),
            }
        )
        with HolderClient(holder) as c:
            assert c.get_metrics(5, 2, "ALL").version == 5
    assert state.served[-1]["payload"]["links"]["self"].startswith(f"{base}/cds-au/v1/admin/metrics")


def test_first_problem_in_document_order() -> None:
    from datetime import UTC, datetime

    from concord_pipelines.cdr_metrics.validation import PayloadError, validate_payload
    from concord_pipelines.sandbox.cdr_holder import metrics_data

    data = metrics_data(1, datetime(2026, 11, 23, tzinfo=UTC), "Australia/Sydney", 5, "ALL")
    data["recipientCount"] = "many"  # later in the document
    data["invocations"]["lowPriority"]["currentDay"] = -0.5  # earlier
    data["invocations"]["highPriority"].pop("currentDay")  # fine: conditional
    with pytest.raises(PayloadError) as err:
        validate_payload({"data": data, "links": {"self": "x"}}, 5)
    assert err.value.path == "$.data.invocations.lowPriority.currentDay"


def test_error_bodies_without_ranges_or_cds_shape() -> None:
    def answer(status: int, body: object) -> httpx.MockTransport:
        return httpx.MockTransport(lambda req: httpx.Response(status, json=body))

    holder = holder_from_mapping({"name": "h", "base_url": "https://h.example"})
    cds = {
        "errors": [
            {"code": "urn:au-cds:error:cds-all:Header/UnsupportedVersion", "title": "t", "detail": "nope"}
        ]
    }
    cases = [
        (answer(406, cds), 'holder h supports none of the versions asked for (2..5); which it supports is unknown (it says: "nope")'),
        (answer(400, {"errors": [{**cds["errors"][0], "code": "urn:au-cds:error:cds-all:Header/InvalidVersion"}]}),
         "holder h rejected the version headers (x-v 5, x-min-v 2): nope"),
        (answer(500, {"message": "boom"}), 'holder h answered HTTP 500 (after 3 attempts): application/json: {"message":"boom"}'),
    ]  # fmt: skip
    for transport, message in cases:
        with HolderClient(holder, transport=transport) as c, pytest.raises(ApiError) as err:
            c.get_metrics(5, 2, "ALL")
        assert str(err.value) == message
