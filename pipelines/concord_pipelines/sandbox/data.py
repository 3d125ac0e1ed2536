"""Deterministic synthetic Concord data: projects, consent types/events, compliance requests, tracker scans.

Everything is derived from `seed` (one `random.Random` stream per resource, seeded with a string so it is
stable across Python runs) and anchored at a clock `now`. Timestamps are kept internally as integer
milliseconds since the epoch; the JSON shapes follow the reference pages:

* consent events, consent types, compliance-request events: ISO-8601 UTC strings with milliseconds
  (`2026-11-23T10:15:22.123Z`, what a Node/Hapi backend's `Date.toISOString()` produces);
* projects and tracker scans: epoch integers, **milliseconds for even-numbered projects and seconds for
  odd-numbered ones**, because the reference leaves the unit unknown and clients must accept both;
* compliance requests: epoch milliseconds, except `resolvedDate` which is ISO (as documented).

Consent events deliberately omit the `createdAt: [null]` / `updatedAt: [null]` members of the reference
example: they are doc-generator artefacts, not data.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE_MS = 60_000

CONSENT_STATES = ("implied", "viewed", "accepted", "declined")
CONSENT_ACTIONS = ("implied", "user_click", "import")
CATEGORIES = ("disclosure", "communication", "privacy_setting", "custom")
SUBCATEGORIES = (
    "analytics", "do_not_sell", "functional", "global_privacy_control", "limit_pii_use", "marketing",
    "strictly_necessary", "unclassified", "email", "phone", "privacy_policy", "terms_of_service",
    "cookie_policy", "data_protection_agreement",
)
REQUEST_TYPES = ("change", "delete", "view", "do_not_sell")
REQUEST_STATUSES = ("pending_verification", "submitted", "acknowledged", "resolved")
RESOLUTION_STATUSES = ("completed", "no_records_found", "partially_completed", "denied", "withdrawn")
SCAN_CATEGORIES = (
    "analytics", "do_not_sell", "functional", "global_privacy_control", "ignored", "limit_pii_use",
    "marketing", "strictly_necessary", "unclassified",
)

# (geography, weight): US states dominate like a typical US-first customer, with EU/UK/AU traffic.
GEOGRAPHIES: tuple[tuple[str, int], ...] = (
    ("US-CA", 18), ("US-NY", 9), ("US-TX", 8), ("US-FL", 6), ("US-WA", 4), ("US-VA", 3), ("US-CO", 2),
    ("GB", 10), ("DE", 8), ("FR", 6), ("NL", 3), ("ES", 3), ("IT", 3), ("IE", 1), ("SE", 1),
    ("CA-ON", 4), ("CA-QC", 2), ("AU-NSW", 3), ("AU-VIC", 2), ("BR", 2), ("JP", 1), ("IN", 1),
)

# (browser, os, user agent, weight): metrics derive browser/os from the user agent via this table.
USER_AGENTS: tuple[tuple[str, str, str, int], ...] = (
    ("Chrome", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 30),
    ("Chrome", "macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 10),
    ("Chrome", "Android", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36", 14),
    ("Safari", "iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 18),
    ("Safari", "macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Safari/605.1.15", 8),
    ("Firefox", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0", 6),
    ("Firefox", "Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", 2),
    ("Edge", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", 9),
    ("Samsung Internet", "Android", "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like "
     "Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", 3),
)
UA_INFO: dict[str, tuple[str, str]] = {ua: (browser, os) for browser, os, ua, _ in USER_AGENTS}

PROJECT_NAMES = ("Acme Shop", "Acme Blog", "Acme Mobile App", "Acme Support", "Acme Careers", "Acme Rewards")

# (category, subcategory[], label, required): the consent types every project offers.
CONSENT_TYPE_TEMPLATES: tuple[tuple[str, tuple[str, ...], str, bool], ...] = (
    ("disclosure", ("strictly_necessary",), "Strictly necessary cookies", True),
    ("disclosure", ("analytics",), "Analytics cookies", False),
    ("disclosure", ("marketing",), "Marketing cookies", False),
    ("disclosure", ("functional",), "Functional cookies", False),
    ("privacy_setting", ("do_not_sell", "global_privacy_control"), "Do not sell or share", False),
    ("communication", ("email",), "Email newsletter", False),
    ("custom", ("terms_of_service", "privacy_policy"), "Terms and privacy policy", False),
)
# Types a banner session produces events for (indices into the templates).
BANNER_TYPES = (0, 1, 2, 3, 4)


_DAYS: dict[int, str] = {}
# Lookup tables for the hot path (4 dates per event): "HH:MM:SS" for every second of a day, ".mmmZ" per ms.
_HMS = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


def iso(ms: int) -> str:
    """Epoch milliseconds -> `YYYY-MM-DDTHH:MM:SS.mmmZ` (fixed width, so string order == time order)."""
    day, rem = divmod(ms, DAY_MS)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))
    sec, milli = divmod(rem, 1000)
    return prefix + _HMS[sec] + _MILLIS[milli]


def parse_time(value: str) -> int:
    """ISO date or date-time (`Z`, offset or naive=UTC) -> epoch ms; ValueError when malformed."""
    text = value.strip()
    if len(text) < 10 or not text[:4].isdigit():
        raise ValueError(f"not an ISO-8601 date-time: {value!r}")
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(milliseconds=1)  # exact; timestamp() * 1000 can be off by 1 ms


def to_ms(value: object) -> int | None:
    """Any date the API emits (ISO string, epoch s or ms) -> epoch ms; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("boolean is not a date")
    if isinstance(value, int | float):
        # Epoch seconds stay below 1e11 until the year 5138; milliseconds are above it since 1973.
        return int(value * 1000) if value < 100_000_000_000 else int(value)
    return parse_time(str(value))


def floor_minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


def new_uuid(rng: random.Random) -> str:
    """A valid version-4 UUID string from `rng` (same bit fiddling as `uuid.UUID(version=4)`, 3x faster)."""
    n = rng.getrandbits(128)
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
    n = (n & ~(0xF000 << 64)) | (4 << 76)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_api_key(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "cnc_" + "".join(rng.choice(alphabet) for _ in range(40))


def random_ip(rng: random.Random) -> str:
    # ~20% IPv6, the rest public-looking IPv4.
    if rng.random() < 0.2:
        return "2001:db8:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(6))
    return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def epoch_for(project: dict, ms: int) -> int:
    """Epoch integer in the unit this project uses (see module docstring)."""
    return ms // 1000 if project["_unit"] == "s" else ms


class Picker:
    """Weighted choice with precomputed cumulative weights (random.choices re-sums them every call)."""

    def __init__(self, values: Sequence[object], weights: Sequence[int]) -> None:
        self.values = list(values)
        self.cum: list[int] = []
        total = 0
        for w in weights:
            total += w
            self.cum.append(total)

    def pick(self, rng: random.Random) -> object:
        return rng.choices(self.values, cum_weights=self.cum, k=1)[0]


GEO_PICKER = Picker([g for g, _ in GEOGRAPHIES], [w for _, w in GEOGRAPHIES])
UA_PICKER = Picker([ua for _, _, ua, _ in USER_AGENTS], [w for *_, w in USER_AGENTS])


@dataclass
class Session:
    """What one visit shares between its consent events."""

    id: str
    concord_id: str
    project: dict
    geography: str
    user_agent: str
    ip: str


def make_projects(rng: random.Random, org_id: str, count: int, now_ms: int, days: int) -> list[dict]:
    projects = []
    for i in range(count):
        name = PROJECT_NAMES[i % len(PROJECT_NAMES)] + (f" {i // len(PROJECT_NAMES) + 1}" if i >= len(PROJECT_NAMES) else "")
        slug = name.lower().replace(" ", "-")
        created = now_ms - (days + 200 + rng.randint(0, 400)) * DAY_MS - rng.randint(0, DAY_MS)
        updated = now_ms - rng.randint(1, max(2, days)) * DAY_MS
        project = {"_unit": "ms" if i % 2 == 0 else "s", "_domain": f"www.{slug.replace('-', '')}.example.com"}
        project.update({
            "id": new_uuid(rng),
            "name": name,
            "slug": slug,
            "status": "active" if i < 3 or rng.random() < 0.8 else "inactive",
            "type": "mobile" if "Mobile" in name else "web",
            "organizationId": org_id,
            "contactEmails": [f"privacy+{slug}@acme.example.com"],
            "statusFlags": {"isActive": True, "isTest": i == count - 1 and count > 3},
            "settings": {"trackers": {"autoBlock": i % 2 == 0, "scanEnabled": True, "scanPeriod": "weekly"}},
        })
        project["statusFlags"]["isActive"] = project["status"] == "active"
        project["dateCreated"] = epoch_for(project, created)
        project["dateUpdated"] = epoch_for(project, updated)
        projects.append(project)
    return projects


def public(item: dict) -> dict:
    """Drop the `_private` bookkeeping keys the sandbox keeps on items."""
    return {k: v for k, v in item.items() if not k.startswith("_")}


def make_consent_types(rng: random.Random, org_id: str, project: dict, now_ms: int) -> list[dict]:
    types = []
    base = to_ms(project["dateCreated"]) or now_ms
    for category, subcats, label, required in CONSENT_TYPE_TEMPLATES:
        created = base + rng.randint(0, 30) * DAY_MS
        version = rng.choice((1, 1, 1, 2, 3))
        updated = created if version == 1 else min(now_ms - DAY_MS, created + rng.randint(30, 300) * DAY_MS)
        types.append({
            "id": new_uuid(rng),
            "organization": org_id,
            "project": project["id"],
            "category": category,
            "subcategory": list(subcats),
            "label": label,
            "version": version,
            "name": label.lower().replace(" ", "_"),
            "description": f"{label} for {project['name']}.",
            "url": f"https://{project['_domain']}/privacy#{label.lower().replace(' ', '-')}",
            "validStates": ["accepted", "declined"] if category != "disclosure" else list(CONSENT_STATES),
            "status": "active",
            "consentDuration": 365 if category == "disclosure" else 730,
            "required": required,
            "dateCreated": iso(created),
            "dateUpdated": iso(max(created, updated)),
        })
    # One retired type per project so `status` filters have something to find.
    types[-1]["status"] = "inactive"
    return types


class EventRow:
    """One consent event: the JSON item, its times as ints (for bisect/sort) and its cached orjson bytes."""

    __slots__ = ("item", "crt", "upd", "cdate", "id", "blob")

    def __init__(self, item: dict, crt: int, upd: int, cdate: int) -> None:
        self.item = item
        self.crt = crt
        self.upd = upd
        self.cdate = cdate
        self.id: str = item["id"]
        self.blob: bytes | None = None


def build_event(
    rng: random.Random, org_id: str, sess: Session, ctype: dict, state: str, action: str,
    created: int, consent: int, updated: int, version: int, submitter: str,
) -> EventRow:
    project = sess.project
    item = {
        "id": new_uuid(rng),
        "concordId": sess.concord_id,
        "consentAction": action,
        "consentDate": iso(consent),
        "consentState": state,
        "dateCreated": iso(created),
        "dateUpdated": iso(updated),
        "consentType": ctype["id"],
        "expirationDate": iso(consent + ctype["consentDuration"] * DAY_MS),
        "organization": org_id,
        "project": project["id"],
        "session": {
            "id": sess.id,
            "ipAddress": sess.ip,
            "domain": project["_domain"],
            "geography": sess.geography,
            "userAgent": sess.user_agent,
        },
        "submitter": submitter,
        "category": ctype["category"],
        "subcategory": list(ctype["subcategory"]),
        "label": ctype["label"],
        "version": version,
    }
    return EventRow(item, created, updated, consent)


def decide_states(rng: random.Random, types: Sequence[dict]) -> tuple[str, list[str]]:
    """(consentAction, one consentState per type) for one banner interaction."""
    r = rng.random()
    if r < 0.15:
        return "implied", ["implied"] * len(types)
    if r < 0.25:
        return "implied", ["viewed"] * len(types)
    if r < 0.60:
        return "user_click", ["accepted"] * len(types)
    if r < 0.75:
        return "user_click", ["accepted" if t["required"] else "declined" for t in types]
    return "user_click", ["accepted" if t["required"] or rng.random() < 0.5 else "declined" for t in types]


def new_session(rng: random.Random, project: dict, concord_id: str) -> Session:
    return Session(new_uuid(rng), concord_id, project, str(GEO_PICKER.pick(rng)), str(UA_PICKER.pick(rng)),
                   random_ip(rng))


def session_events(
    rng: random.Random, org_id: str, sess: Session, types: Sequence[dict], start: int, now_ms: int,
    kind: str = "banner", update_rate: float = 0.05,
) -> list[EventRow]:
    """The events one visit produces. kind: banner (created at `start`), import (old consentDate)."""
    rows = []
    t = start
    if kind == "import":
        action, states = "import", [rng.choice(("accepted", "accepted", "declined")) for _ in types]
        consent = start - rng.randint(2 * DAY_MS, 56 * DAY_MS)  # days to weeks before it reached Concord
        submitter = sess.project["_importer"]
    else:
        action, states = decide_states(rng, types)
        consent = 0
        submitter = sess.concord_id
    for ctype, state in zip(types, states, strict=True):
        t = min(t + rng.randint(5, 1500), now_ms - 1)
        event_consent = consent if kind == "import" else t - rng.randint(0, 800)
        updated, version = t, 1
        if update_rate and rng.random() < update_rate and now_ms - t > 2 * MINUTE_MS:
            updated, version = rng.randint(t + MINUTE_MS, now_ms - 1), rng.choice((2, 2, 3))
        rows.append(build_event(rng, org_id, sess, ctype, state, action, t, event_consent, updated, version,
                                submitter))
    return rows


def banner_types(types: Sequence[dict]) -> list[dict]:
    return [types[i] for i in BANNER_TYPES if i < len(types) and types[i]["status"] == "active"]


def generate_events(
    rng: random.Random, org_id: str, projects: Sequence[dict], types_by_project: dict[str, list[dict]],
    count: int, now_ms: int, days: int, users: Sequence[str],
) -> list[EventRow]:
    """`count` events over [now - days, now); ~2% are imports created in the last 3 days."""
    start = now_ms - days * DAY_MS
    recent = now_ms - min(days, 3) * DAY_MS
    weights = [max(1, 10 - 3 * i) for i in range(len(projects))]  # first project busiest
    project_picker = Picker(projects, weights)
    rows: list[EventRow] = []
    while len(rows) < count:
        project = project_picker.pick(rng)
        assert isinstance(project, dict)
        sess = new_session(rng, project, users[rng.randrange(len(users))])
        types = banner_types(types_by_project[project["id"]])
        if rng.random() < 0.02:
            rows.extend(session_events(rng, org_id, sess, types, rng.randint(recent, now_ms - 10_000), now_ms,
                                       kind="import"))
        else:
            rows.extend(session_events(rng, org_id, sess, types, rng.randint(start, now_ms - 10_000), now_ms))
    del rows[count:]
    return rows


FIRST_NAMES = ("Ava", "Liam", "Mia", "Noah", "Zoe", "Omar", "Ines", "Kenji", "Priya", "Lukas", "Chloe", "Mateo")
LAST_NAMES = ("Smith", "Garcia", "Müller", "Nguyen", "Brown", "Rossi", "Kowalski", "O'Brien", "Tanaka", "Patel")
REQUEST_EVENTS = {"submitted": "verified", "acknowledged": "acknowledged", "resolved": "resolved"}


def new_compliance_request(rng: random.Random, org_id: str, project: dict, concord_id: str, at: int) -> dict:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    sess = new_session(rng, project, concord_id)
    request = rng.choice(("delete", "delete", "view", "view", "do_not_sell", "change"))
    return {
        "id": new_uuid(rng),
        "concordId": concord_id,
        "organization": org_id,
        "project": project["id"],
        "request": request,
        "requestDetails": f"Please {request.replace('_', ' ')} my personal data.",
        "status": "pending_verification",
        "resolutionStatus": None,
        "resolution": None,
        "notes": None,
        "domain": project["_domain"],
        "session": {"id": sess.id, "ipAddress": sess.ip, "domain": project["_domain"],
                    "geography": sess.geography, "userAgent": sess.user_agent},
        "user": {
            "email": f"{first.lower()}.{last.lower().replace(chr(39), '')}{rng.randint(1, 999)}@mail.example.com",
            "firstName": first,
            "lastName": last,
            "phoneNumber": f"+1555{rng.randint(1000000, 9999999)}" if rng.random() < 0.6 else None,
        },
        "verificationMethod": "email",
        "dataSystemTasks": [],
        "files": [],
        "requestDate": at,
        "dateCreated": at,
        "dateUpdated": at,
        "acknowledgedDate": None,
        "verifiedDate": None,
        "resolvedDate": None,
    }


def request_event(rng: random.Random, org_id: str, req: dict, event: str, at: int, account: str | None,
                  details: dict) -> dict:
    return {
        "id": new_uuid(rng),
        "accountId": account,
        "complianceRequestId": req["id"],
        "projectId": req["project"],
        "organizationId": org_id,
        "event": event,
        "details": details,
        "dateCreated": iso(at),
        "dateUpdated": iso(at),
    }


def advance_request(rng: random.Random, org_id: str, req: dict, at: int, account: str) -> dict | None:
    """Move a request one status forward at time `at`; returns the compliance-requests-event, or None."""
    index = REQUEST_STATUSES.index(req["status"])
    if index == len(REQUEST_STATUSES) - 1:
        return None
    new_status = REQUEST_STATUSES[index + 1]
    details: dict = {"fromStatus": req["status"], "toStatus": new_status}
    req["status"] = new_status
    req["dateUpdated"] = at
    if new_status == "submitted":
        req["verifiedDate"] = at
        details["verificationMethod"] = req["verificationMethod"]
    elif new_status == "acknowledged":
        req["acknowledgedDate"] = at
        req["dataSystemTasks"] = [{"dataSystem": "crm", "status": "pending"}, {"dataSystem": "warehouse", "status": "pending"}]
    else:
        resolution = rng.choice(("completed", "completed", "completed", "no_records_found", "partially_completed",
                                 "denied", "withdrawn"))
        req["resolvedDate"] = iso(at)
        req["resolutionStatus"] = resolution
        req["resolution"] = f"Request {resolution.replace('_', ' ')}."
        req["dataSystemTasks"] = [dict(task, status="completed") for task in req["dataSystemTasks"]]
        details["resolutionStatus"] = resolution
    return request_event(rng, org_id, req, REQUEST_EVENTS[new_status], at, account, details)


def generate_compliance(
    rng: random.Random, org_id: str, projects: Sequence[dict], count: int, now_ms: int, days: int,
    users: Sequence[str], account: str,
) -> tuple[list[dict], list[dict]]:
    requests: list[dict] = []
    events: list[dict] = []
    for _ in range(count):
        project = rng.choice(projects)
        at = rng.randint(now_ms - days * DAY_MS, now_ms - 3_600_000)
        req = new_compliance_request(rng, org_id, project, users[rng.randrange(len(users))], at)
        events.append(request_event(rng, org_id, req, "created", at, None, {"toStatus": "pending_verification"}))
        # Each later step happens some time after the previous one, if that time is already past.
        for low, high in ((10 * MINUTE_MS, DAY_MS), (3_600_000, 3 * DAY_MS), (DAY_MS, 12 * DAY_MS)):
            at += rng.randint(low, high)
            if at >= now_ms or rng.random() < 0.15:
                break
            event = advance_request(rng, org_id, req, at, account)
            if event:
                events.append(event)
        requests.append(req)
    return requests, events


def scan_results(rng: random.Random, scale: float = 1.0) -> dict:
    categories = {c: int(rng.randint(0, 25) * scale) for c in SCAN_CATEGORIES}
    total = sum(categories.values())
    project_count = int(total * rng.uniform(0.2, 0.5))
    return {"total": total, "new": min(total, rng.randint(0, 4)), "project": project_count,
            "global": total - project_count, "categories": categories}


def new_scan(rng: random.Random, project: dict, at: int, scan_type: str, status: str) -> dict:
    if status == "completed":
        results = scan_results(rng)
    elif status == "running":
        results = scan_results(rng, 0.0)  # nothing classified yet
    else:
        results = scan_results(rng, 0.0)
    return {
        "date": epoch_for(project, at),
        "status": status,
        "scanType": scan_type,
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/concord-scanner/{rng.getrandbits(128):032x}",
        "domainsCount": rng.randint(1, 6) if status != "running" else 0,
        "results": results,
    }


def generate_scans(rng: random.Random, org_id: str, projects: Sequence[dict], now_ms: int, days: int) -> list[dict]:
    """One config per project with weekly scans; the newest scan of one project is still running."""
    configs = []
    running = rng.randrange(len(projects))
    weeks = max(2, days // 7 + 1)
    for index, project in enumerate(projects):
        day_of_week, hour = rng.randint(0, 6), rng.randint(0, 23)
        history = []
        first = now_ms - weeks * 7 * DAY_MS + rng.randint(0, 6 * DAY_MS)
        for w in range(weeks):
            at = first + w * 7 * DAY_MS
            if at >= now_ms:
                break
            status = "failed" if rng.random() < 0.08 else "completed"
            history.append(new_scan(rng, project, at, "scheduled", status))
            if rng.random() < 0.15 and at + DAY_MS < now_ms:
                history.append(new_scan(rng, project, at + rng.randint(3_600_000, DAY_MS), "manual", "completed"))
        if index == running:
            history.append(new_scan(rng, project, now_ms - rng.randint(MINUTE_MS, 30 * MINUTE_MS), "scheduled",
                                    "running"))
        configs.append({
            "id": new_uuid(rng),
            "scheduledScanEnabled": True,
            "organizationId": org_id,
            "projectId": project["id"],
            "scanPeriod": "weekly",
            "scheduledHour": hour,
            "scheduledDayOfWeek": day_of_week,
            "scheduledDayOfMonth": 1,
            "scanHistory": history,
        })
    return configs


# (name, type, retention days or None): the systems a compliance request fans out to.
DATA_SYSTEM_TEMPLATES: tuple[tuple[str, str, int | None], ...] = (
    ("Salesforce CRM", "saas", 2555),
    ("Postgres app database", "database", 1095),
    ("Snowflake warehouse", "warehouse", 730),
    ("Zendesk support", "saas", 365),
    ("Mailchimp newsletters", "saas", None),
    ("S3 event archive", "storage", 90),
    ("Segment CDP", "saas", 180),
    ("HubSpot marketing", "saas", None),
)
DATA_SYSTEM_STATUSES = ("active", "inactive")


def generate_data_systems(rng: random.Random, org_id: str, projects: Sequence[dict], now_ms: int,
                          days: int) -> list[dict]:
    """One item per template: linked to a random non-empty subset of projects, epoch-ms dates."""
    systems = []
    ids = [p["id"] for p in projects]
    for index, (name, kind, retention) in enumerate(DATA_SYSTEM_TEMPLATES):
        created = now_ms - rng.randint(days + 30, days + 400) * DAY_MS - rng.randint(0, DAY_MS)
        updated = now_ms - rng.randint(1, max(2, days)) * DAY_MS if rng.random() < 0.6 else created
        systems.append({
            "id": new_uuid(rng),
            "organizationId": org_id,
            "name": name,
            "type": kind,
            "status": "inactive" if index == len(DATA_SYSTEM_TEMPLATES) - 1 else "active",
            "retention": retention,
            "projectIds": sorted(rng.sample(ids, rng.randint(1, len(ids)))),
            "dateCreated": created,
            "dateUpdated": max(created, updated),
        })
    return systems


# (name, consentMode, countries, banner layout): the consent regions a project configures.
REGION_TEMPLATES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("European Union", "opt_in", ("DE", "FR", "NL", "ES", "IT", "IE", "SE"), "modal"),
    ("United Kingdom", "opt_in", ("GB",), "modal"),
    ("California", "opt_out", ("US-CA",), "bar"),
    ("United States (other)", "notice_only", ("US-NY", "US-TX", "US-FL", "US-WA", "US-VA", "US-CO"), "bar"),
    ("Rest of world", "notice_only", ("CA-ON", "CA-QC", "AU-NSW", "AU-VIC", "BR", "JP", "IN"), "bar"),
)
CONSENT_MODES = ("opt_in", "opt_out", "notice_only")


def make_regions(rng: random.Random, org_id: str, project: dict, now_ms: int) -> list[dict]:
    """The project's regions (the first 3 to 5 templates), each with its banner configuration."""
    base = to_ms(project["dateCreated"]) or now_ms
    regions = []
    for name, mode, countries, layout in REGION_TEMPLATES[:rng.randint(3, len(REGION_TEMPLATES))]:
        created = min(now_ms - DAY_MS, base + rng.randint(0, 20) * DAY_MS)
        updated = rng.randint(created, now_ms - DAY_MS) if rng.random() < 0.5 else created
        regions.append({
            "id": new_uuid(rng),
            "organization": org_id,
            "project": project["id"],
            "name": name,
            "consentMode": mode,
            "countries": list(countries),
            "status": "active",
            "banner": {
                "layout": layout,
                "position": "center" if layout == "modal" else rng.choice(("bottom", "top")),
                "theme": rng.choice(("light", "dark")),
                "language": "auto",
                "showRejectAll": mode == "opt_in",
                "gpcHonored": mode != "opt_in",
                "version": rng.randint(1, 6),
            },
            "dateCreated": iso(created),
            "dateUpdated": iso(max(created, updated)),
        })
    regions[-1]["status"] = "draft" if len(regions) > 3 else regions[-1]["status"]
    return regions
