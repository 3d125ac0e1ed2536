"""The sandbox conforms to its own OpenAPI document (schemathesis, bounded examples, faults off)."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from concord_pipelines.sandbox import SandboxServer
from concord_pipelines.sandbox.openapi import build_openapi

schema = schemathesis.openapi.from_dict(build_openapi())
# Conformance of what the sandbox answers; whether it rejects every schema-violating request is not the
# point of a fake (it ignores unknown query parameters on purpose, like the real API).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def test_openapi_document_is_served(shared: SandboxServer) -> None:
    doc = httpx.get(shared.base_url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.") and len(doc["paths"]) == 10
    params = {p["name"] for p in doc["paths"]["/organizations/{organizationId}/consent-events"]["get"]["parameters"]}
    assert {"projectIds", "startDate", "endDate", "consentState", "sort", "order", "offset", "limit"} <= params


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_conforms_to_openapi(case: schemathesis.Case, shared: SandboxServer) -> None:
    # Real ids, so generated requests reach the data instead of stopping at 404.
    case.path_parameters = {**(case.path_parameters or {}), "organizationId": shared.org_id}
    if "projectId" in case.path_parameters:
        case.path_parameters["projectId"] = shared.state.projects[0]["id"]
    response = case.call(base_url=shared.base_url, headers={"x-api-key": shared.api_key})
    assert response.status_code < 500, response.text
    case.validate_response(response, checks=CHECKS)
