"""The client's concurrency bound, over real HTTP: `concurrency` requests on the wire, never more.

Pages are decoded outside the request slot (so a slow decode does not hold back the next request);
these tests pin that the API still never sees more than `concurrency` requests at once.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from concord_pipelines.concord.client import ClientOptions, ConcordClient, ResourceStats

ROWS = 240


class _CountingApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency = latency
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.served = 0


class _Handler(BaseHTTPRequestHandler):
    server: _CountingApi

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        api = self.server
        with api.lock:
            api.active += 1
            api.peak = max(api.peak, api.active)
        try:
            time.sleep(api.latency)
            query = parse_qs(urlparse(self.path).query)
            offset, limit = int(query["offset"][0]), int(query["limit"][0])
            items = [{"id": f"e{i:04d}", "version": 1} for i in range(offset, min(offset + limit, ROWS))]
            body = json.dumps({"items": items, "total": ROWS, "offset": offset, "limit": limit}).encode()
        finally:
            with api.lock:
                api.active -= 1
                api.served += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api():
    server = _CountingApi(latency=0.03)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(api: _CountingApi, concurrency: int) -> ConcordClient:
    host, port = api.server_address[:2]
    return ConcordClient(
        ClientOptions(base_url=f"http://{host}:{port}", api_key="k", organization_id="o", concurrency=concurrency, page_limit=10)
    )


@pytest.mark.parametrize("arrow", [False, True])
@pytest.mark.parametrize("concurrency", [1, 3])
def test_paging_keeps_at_most_concurrency_requests_on_the_wire(api, concurrency, arrow):
    with _client(api, concurrency) as client:
        pages = list(client.iter_pages("/events", {}, ResourceStats(), arrow=arrow))
    ids = [row for page in pages for row in (page.column("id").to_pylist() if arrow else [i["id"] for i in page])]
    assert sorted(ids) == [f"e{i:04d}" for i in range(ROWS)]
    assert api.peak == concurrency  # reached, never exceeded


def test_single_requests_keep_the_same_bound(api):
    with _client(api, 2) as client:
        answers = list(client.get_json_each("/events", [{"offset": o, "limit": 10} for o in range(0, ROWS, 10)], ResourceStats()))
    assert [a["offset"] for a in answers] == list(range(0, ROWS, 10))
    assert api.peak == 2
