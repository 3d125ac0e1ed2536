"""OpenAPI 3.0 document of the sandbox's /privacy-v1 endpoints, following the Concord reference pages."""

from __future__ import annotations

from functools import cache
from typing import Any

from concord_pipelines.sandbox import data as d
from concord_pipelines.sandbox.state import SORTS

STR = {"type": "string"}
NSTR = {"type": "string", "nullable": True}
INT = {"type": "integer"}
NINT = {"type": "integer", "nullable": True}
UUID = {"type": "string", "format": "uuid"}
DATE_TIME = {"type": "string", "format": "date-time"}
ERRORS = {
    "400": "Bad Request", "401": "Unauthorized", "403": "Forbidden", "404": "Not Found",
    "422": "Unprocessable Entity", "429": "Too Many Requests", "500": "Internal Server Error",
    "502": "Bad Gateway", "503": "Service Unavailable", "504": "Gateway Timeout",
}


def obj(required: list[str] | None = None, /, **props: Any) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required is not None:
        schema["required"] = required
    return schema


def arr(items: dict) -> dict:
    return {"type": "array", "items": items}


def enum(values: tuple[str, ...], nullable: bool = False) -> dict:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if nullable:
        schema["nullable"] = True
        schema["enum"] = [*values, None]
    return schema


SESSION = obj(["id"], id=STR, ipAddress=STR, domain=STR, geography=STR, userAgent=STR)
CONSENT_EVENT = obj(
    ["id", "concordId", "consentAction", "consentDate", "consentState", "dateCreated", "dateUpdated",
     "organization", "project", "category", "subcategory", "version"],
    id=UUID, concordId=STR, consentAction=enum(d.CONSENT_ACTIONS), consentDate=DATE_TIME,
    consentState=enum(d.CONSENT_STATES), dateCreated=DATE_TIME, dateUpdated=DATE_TIME, consentType=STR,
    expirationDate={**DATE_TIME, "nullable": True}, organization=UUID, project=UUID, session=SESSION,
    submitter=STR, category=enum(d.CATEGORIES), subcategory=arr(STR), label=STR, version=INT,
)
PROJECT = obj(
    ["id", "name", "status", "organizationId", "dateCreated", "dateUpdated"],
    id=UUID, name=STR, slug=STR, status=STR, type=STR, organizationId=UUID, contactEmails=arr(STR),
    statusFlags=obj(isActive={"type": "boolean"}, isTest={"type": "boolean"}),
    settings={"type": "object"}, dateCreated=INT, dateUpdated=INT,
)
CONSENT_TYPE = obj(
    ["id", "project", "category", "dateCreated", "dateUpdated"],
    id=UUID, organization=UUID, project=UUID, category=enum(d.CATEGORIES), subcategory=arr(STR), label=STR,
    version=INT, name=STR, description=NSTR, url=NSTR, validStates=arr(STR), status=STR, consentDuration=NINT,
    required={"type": "boolean"}, dateCreated=DATE_TIME, dateUpdated=DATE_TIME,
)
COMPLIANCE_REQUEST = obj(
    ["id", "project", "request", "status", "requestDate", "dateCreated", "dateUpdated"],
    id=UUID, concordId=NSTR, organization=UUID, project=UUID, request=enum(d.REQUEST_TYPES), requestDetails=NSTR,
    status=enum(d.REQUEST_STATUSES), resolutionStatus=enum(d.RESOLUTION_STATUSES, nullable=True),
    resolution=NSTR, notes=NSTR, domain=NSTR, session=SESSION,
    user=obj(email=NSTR, firstName=NSTR, lastName=NSTR, phoneNumber=NSTR), verificationMethod=NSTR,
    dataSystemTasks=arr({"type": "object"}), files=arr({"type": "object"}), requestDate=INT, dateCreated=INT,
    dateUpdated=INT, acknowledgedDate=NINT, verifiedDate=NINT, resolvedDate={**DATE_TIME, "nullable": True},
)
COMPLIANCE_EVENT = obj(
    ["complianceRequestId", "event", "dateCreated", "dateUpdated"],
    id=UUID, accountId=NSTR, complianceRequestId=UUID, projectId=UUID, organizationId=UUID, event=STR,
    details={"type": "object"}, dateCreated=DATE_TIME, dateUpdated=DATE_TIME,
)
DATA_SYSTEM = obj(
    ["id", "name", "status", "dateCreated", "dateUpdated"],
    id=UUID, organizationId=UUID, name=STR, type=STR, status=STR, retention=NINT, projectIds=arr(UUID),
    dateCreated=INT, dateUpdated=INT,
)
REGION = obj(
    ["id", "project", "name", "consentMode", "dateCreated", "dateUpdated"],
    id=UUID, organization=UUID, project=UUID, name=STR, consentMode=enum(d.CONSENT_MODES), countries=arr(STR),
    status=STR, banner=obj(layout=STR, position=STR, theme=STR, language=STR, showRejectAll={"type": "boolean"},
                           gpcHonored={"type": "boolean"}, version=INT),
    dateCreated=DATE_TIME, dateUpdated=DATE_TIME,
)
COUNTS = {"type": "object", "additionalProperties": INT}
SCAN = obj(
    ["date", "status"], date=INT, status=STR, scanType=STR, taskArn=NSTR, domainsCount=INT,
    results=obj(total=INT, new=INT, project=INT, categories=COUNTS, **{"global": INT}),
)
SCAN_CONFIG = obj(
    ["projectId", "scanHistory"], id=UUID, scheduledScanEnabled={"type": "boolean"}, organizationId=UUID,
    projectId=UUID, scanPeriod=enum(("quarterly", "monthly", "weekly", "daily")), scheduledHour=NINT,
    scheduledDayOfWeek=NINT, scheduledDayOfMonth=NINT, scanHistory=arr(SCAN),
)
DAILY = arr(obj(["date", "count"], date=STR, count=INT))
TREND = obj(percentage={"type": "number"}, direction=enum(("up", "down", "flat")))
GEO = arr(obj(["country", "count"], country=STR, count=INT))
METRICS = obj(
    ["sessions", "consentEvents", "complianceRequests"],
    sessions=obj(["dailySessionCounts", "dateRangeTotal"], dailySessionCounts=DAILY, dateRangeTotal=INT, trend=TREND),
    consentEvents=obj(
        ["totalEvents"], browserCounts=arr(obj(browser=STR, count=INT)),
        categoryStats={"type": "object", "additionalProperties": COUNTS}, dailyEventCounts=DAILY,
        fullConsent=INT, geographyCounts=GEO, noConsent=INT, osCounts=arr(obj(os=STR, count=INT)),
        partialConsent=INT, totalCategories=INT, totalEvents=INT, totalUsers=INT, trend=TREND,
        trendData={"type": "object"},
    ),
    complianceRequests=obj(
        ["totalRequests"], dailyRequestCounts=DAILY, dateRangeTotal=INT, geographyCounts=GEO,
        resolutionMetrics=obj(avgResolutionDays={"type": "number"}, medianResolutionDays={"type": "number"},
                              minResolutionDays={"type": "number"}, maxResolutionDays={"type": "number"}),
        statusStats=COUNTS, statusByType={"type": "object", "additionalProperties": COUNTS}, totalRequests=INT,
        trend=TREND, trendData={"type": "object"}, typeStats=COUNTS,
    ),
)


def param(name: str, schema: dict, where: str = "query", required: bool = False, explode: bool | None = None) -> dict:
    out: dict[str, Any] = {"name": name, "in": where, "required": required or where == "path", "schema": schema}
    if explode is not None:
        out["style"], out["explode"] = "form", explode
    return out


def str64() -> dict:
    return {"type": "string", "maxLength": 64}


ORG = param("organizationId", UUID, "path")
PROJ = param("projectId", UUID, "path")


def paging(resource: str) -> list[dict]:
    return [
        param("sort", enum(SORTS[resource])),
        param("order", enum(("asc", "desc"))),
        param("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0}),
        param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    ]


def dates() -> list[dict]:
    return [param("startDate", DATE_TIME), param("endDate", DATE_TIME)]


EVENT_PARAMS = [
    param("projectIds", arr(UUID), explode=True), *dates(),
    param("category", enum(d.CATEGORIES)), param("subcategory", STR), param("label", STR),
    param("consentState", enum(d.CONSENT_STATES)), param("submitter", str64()), param("sessionId", str64()),
    param("geography", str64()), param("consentAction", enum(d.CONSENT_ACTIONS)), param("concordId", str64()),
    *paging("consent-events"),
]


def page_of(item: dict) -> dict:
    return obj(["offset", "count", "total", "items"], offset=INT, count=INT, total=INT, items=arr(item))


def operation(op_id: str, summary: str, params: list[dict], schema: dict) -> dict:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}
    for code, text in ERRORS.items():
        responses[code] = {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    return {"get": {"operationId": op_id, "summary": summary, "parameters": params, "responses": responses,
                    "security": [{"apiKey": []}]}}


@cache
def build_openapi() -> dict:
    base = "/organizations/{organizationId}"
    paths = {
        base + "/projects": operation("getProjects", "List projects",
                                      [ORG, param("name", STR), param("status", STR), *paging("projects")],
                                      page_of(PROJECT)),
        base + "/consent-events": operation("getConsentEvents", "Get organization level consent events",
                                            [ORG, *EVENT_PARAMS], page_of(CONSENT_EVENT)),
        base + "/projects/{projectId}/consent-events": operation(
            "getProjectConsentEvents", "Get project level consent events", [ORG, PROJ, *EVENT_PARAMS],
            page_of(CONSENT_EVENT)),
        base + "/projects/{projectId}/consent-types": operation(
            "getConsentTypes", "List consent types of a project",
            [ORG, PROJ, param("category", enum(d.CATEGORIES)), param("label", STR), param("name", STR),
             param("status", STR), *paging("consent-types")], page_of(CONSENT_TYPE)),
        base + "/compliance-requests": operation(
            "getComplianceRequests", "List compliance requests",
            [ORG, param("projectIds", arr(UUID), explode=True), param("status", enum(d.REQUEST_STATUSES)),
             param("request", enum(d.REQUEST_TYPES)), param("resolutionStatus", enum(d.RESOLUTION_STATUSES)),
             *dates(), *paging("compliance-requests")], page_of(COMPLIANCE_REQUEST)),
        base + "/compliance-requests-events": operation(
            "getComplianceRequestsEvents", "List compliance request events",
            [ORG, param("complianceRequestId", STR), *dates(), *paging("compliance-requests-events")],
            page_of(COMPLIANCE_EVENT)),
        base + "/projects/{projectId}/tracker-scan-history": operation(
            "getTrackerScanHistory", "Get tracker scan history",
            [ORG, PROJ, param("id", STR), param("scanPeriod", enum(("quarterly", "monthly", "weekly", "daily"))),
             param("scheduledScanEnabled", {"type": "boolean"}),
             param("scheduledHour", {"type": "integer", "minimum": 0, "maximum": 23}),
             param("scheduledDayOfWeek", {"type": "integer", "minimum": 0, "maximum": 6}),
             param("scheduledDayOfMonth", {"type": "integer", "minimum": 1, "maximum": 31}),
             *paging("tracker-scan-history")], page_of(SCAN_CONFIG)),
        base + "/data-systems": operation(
            "getDataSystems", "List data systems", [ORG, param("status", STR), *paging("data-systems")],
            page_of(DATA_SYSTEM)),
        base + "/projects/{projectId}/regions": operation(
            "getRegions", "List the consent regions of a project",
            [ORG, PROJ, param("name", STR), param("consentMode", enum(d.CONSENT_MODES)), param("status", STR),
             *paging("regions")], page_of(REGION)),
        base + "/metrics": operation(
            "getUsageMetrics", "Get usage metrics",
            [ORG, param("startDate", DATE_TIME, required=True), param("endDate", DATE_TIME, required=True),
             param("project", arr(UUID), explode=True)], METRICS),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Concord Privacy API (sandbox)", "version": "3.29.0-sandbox",
                 "description": "Local fake of the Concord Privacy API; see pipelines/concord_pipelines/sandbox for semantics."},
        "servers": [{"url": "/privacy-v1"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
            "schemas": {"Error": obj(["statusCode", "error", "message"], statusCode=INT, error=STR, message=STR)},
        },
        "security": [{"apiKey": []}],
    }
