"""The sandbox's data and everything that reads or changes it (queries, mutations, truth, clock).

Date-filter semantics (the reference leaves them unknown; this is the robust reading the sandbox enforces):

* consent events, compliance requests, compliance-requests-events: `startDate`/`endDate` filter on
  **`dateUpdated`**, half-open **[startDate, endDate)**. A record that changes gets a new `dateUpdated`,
  so an incremental client windowing on it sees every change exactly once.
  The `consent-date-filter` / `created-date-filter` profiles switch the field (`ListQuery.date_field`).
* metrics: consent events are counted by **`consentDate`** in [startDate, endDate), compliance requests by
  `requestDate` in the same range.
* Default order when no `sort` is given: `dateCreated` descending; every sort breaks ties on `id` in the
  same direction, so pages are stable.

Concurrency: the app's endpoints are `async` (run on the event loop), while tests may mutate from another
thread, so every read and write holds `self.lock` (a plain RLock, held for microseconds per page).
"""

from __future__ import annotations

import bisect
import gc
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from concord_pipelines.sandbox import data as d
from concord_pipelines.sandbox.faults import Faults
from concord_pipelines.sandbox.profiles import Profiles

# Event fields an update never changes: whole-list orders by them survive updates and only take inserts.
STABLE_SORTS = frozenset(("dateCreated", "consentDate", "expirationDate", "id", "concordId", "project", "category",
                          "label", "consentType", "submitter"))
LATE_MS = 30 * d.DAY_MS  # how far back late projects and late scans are dated
RESOURCES = ("projects", "consent-events", "consent-types", "compliance-requests", "compliance-requests-events",
             "tracker-scan-history", "data-systems", "regions")

# Sortable fields per resource (top-level scalars); anything else is a 422.
EVENT_SORTS = ("dateCreated", "dateUpdated", "consentDate", "expirationDate", "id", "version", "concordId",
               "consentState", "consentAction", "category", "label", "project", "submitter", "consentType")
SORTS: dict[str, tuple[str, ...]] = {
    "consent-events": EVENT_SORTS,
    "projects": ("dateCreated", "dateUpdated", "id", "name", "slug", "status", "type"),
    "consent-types": ("dateCreated", "dateUpdated", "id", "name", "label", "category", "status", "version"),
    "compliance-requests": ("dateCreated", "dateUpdated", "requestDate", "acknowledgedDate", "verifiedDate",
                            "resolvedDate", "id", "status", "request", "resolutionStatus", "project"),
    "compliance-requests-events": ("dateCreated", "dateUpdated", "id", "event", "complianceRequestId"),
    "tracker-scan-history": ("id", "projectId", "scanPeriod", "scheduledHour", "scheduledDayOfWeek"),
    "data-systems": ("dateCreated", "dateUpdated", "id", "name", "status", "type", "retention"),
    "regions": ("dateCreated", "dateUpdated", "id", "name", "consentMode", "status"),
}


@dataclass
class SandboxConfig:
    """How to build a sandbox. `now` None = real UTC now floored to the minute, and the clock then ticks."""

    seed: int = 0
    events: int = 10_000
    days: int = 30
    projects: int = 3
    now: datetime | str | None = None
    api_key: str | None = None
    org_id: str | None = None
    faults: str | dict | None = None  # spec string or dict, see concord_pipelines.sandbox.faults
    compliance_requests: int | None = None  # default: max(12, events // 500) capped at 5000
    profiles: str = ""  # server profiles, e.g. "elastic,rate-limit:10"; see concord_pipelines.sandbox.profiles


@dataclass
class ListQuery:
    """A validated list request. filters: field -> accepted values (any match)."""

    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    start: int | None = None  # epoch ms, inclusive
    end: int | None = None  # epoch ms, exclusive
    sort: str | None = None
    desc: bool = True
    offset: int = 0
    limit: int = 100
    date_field: str = "dateUpdated"  # what start/end filter on (the date-filter profiles change it)
    shuffle_ties: bool = False  # unstable-ties profile: equal sort values in a random order per request


class Clock:
    """Fixed clock when given `now`; otherwise real time starting at the current minute."""

    def __init__(self, now: datetime | str | None) -> None:
        self.ticking = now is None
        if now is None:
            now = d.floor_minute(datetime.now(UTC))
        self._anchor = d.parse_time(now) if isinstance(now, str) else _dt_ms(now)
        self._started = time.monotonic()

    def now_ms(self) -> int:
        if not self.ticking:
            return self._anchor
        return self._anchor + int((time.monotonic() - self._started) * 1000)

    def set(self, now: datetime | str | int) -> None:
        self._anchor = now if isinstance(now, int) else d.parse_time(now) if isinstance(now, str) else _dt_ms(now)
        self._started = time.monotonic()

    def advance(self, seconds: float) -> None:
        self._anchor += int(seconds * 1000)


def _dt_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - d.EPOCH) // timedelta(milliseconds=1)


def _row_key(row: d.EventRow) -> tuple[int, str]:
    return (row.upd, row.id)


def _upd(row: d.EventRow) -> int:
    return row.upd


def _created(row: d.EventRow) -> int:
    return row.crt


def _consented(row: d.EventRow) -> int:
    return row.cdate


EVENT_FIELD_GETTERS: dict[str, Callable[[dict], Iterable[str] | str]] = {
    "projectIds": lambda item: item["project"],
    "geography": lambda item: item["session"]["geography"],
    "sessionId": lambda item: item["session"]["id"],
    "domain": lambda item: item["session"]["domain"],
    "subcategory": lambda item: item["subcategory"],
}


def _matcher(name: str, values: tuple[str, ...]) -> Callable[[dict], bool]:
    accepted = frozenset(values)
    if name == "subcategory":
        return lambda item: not accepted.isdisjoint(item["subcategory"])
    getter = EVENT_FIELD_GETTERS.get(name)
    if getter is None:
        return lambda item: item.get(name) in accepted
    return lambda item: getter(item) in accepted


class SandboxState:
    """All sandbox data plus its mutations; build from a SandboxConfig (deterministic per seed)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config = config or SandboxConfig()
        self.lock = threading.RLock()
        self.clock = Clock(config.now)
        self.version = 0
        self.stats: Counter[str] = Counter()
        self.faults = Faults(config.seed, config.faults)
        self.profiles = Profiles(config.profiles)
        self._cache: OrderedDict[tuple, list[d.EventRow]] = OrderedDict()
        self._orders: dict[str, list[d.EventRow]] = {}  # unfiltered orders by a field updates never change
        # Millions of small containers: with the cyclic GC on, every generation pass rescans them all
        # (10x slower generation). None of them form cycles, so pause it and freeze the result.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._generate()
        finally:
            if gc_was_enabled:
                gc.enable()
            gc.freeze()

    # ---- generation -------------------------------------------------------------------------------
    def _generate(self) -> None:
        cfg, seed, now = self.config, self.config.seed, self.clock.now_ms()
        ids = random.Random(f"{seed}:ids")
        self.org_id = cfg.org_id or d.new_uuid(ids)
        self.api_key = cfg.api_key or d.new_api_key(ids)
        self.account_id = d.new_uuid(ids)  # the admin who works compliance requests
        prng = random.Random(f"{seed}:projects")
        self.projects = d.make_projects(prng, self.org_id, max(1, cfg.projects), now, cfg.days)
        for project in self.projects:
            project["_importer"] = d.new_uuid(prng)
        self.project_by_id = {p["id"]: p for p in self.projects}
        trng = random.Random(f"{seed}:types")
        self.consent_types = {p["id"]: d.make_consent_types(trng, self.org_id, p, now) for p in self.projects}
        erng = random.Random(f"{seed}:events")
        self.users = [d.new_uuid(erng) for _ in range(max(5, cfg.events // 12))]
        rows = d.generate_events(erng, self.org_id, self.projects, self.consent_types, cfg.events, now, cfg.days,
                                 self.users)
        rows.sort(key=_row_key)
        self.events: list[d.EventRow] = rows
        self.event_by_id = {row.id: row for row in rows}
        crng = random.Random(f"{seed}:compliance")
        count = cfg.compliance_requests if cfg.compliance_requests is not None else min(5000, max(12, cfg.events // 500))
        self.requests, self.request_events = d.generate_compliance(
            crng, self.org_id, self.projects, count, now, cfg.days, self.users, self.account_id)
        self.scans = d.generate_scans(random.Random(f"{seed}:scans"), self.org_id, self.projects, now, cfg.days)
        self.data_systems = d.generate_data_systems(random.Random(f"{seed}:data-systems"), self.org_id,
                                                    self.projects, now, cfg.days)
        self._region_rng = random.Random(f"{seed}:regions")
        self.regions = {p["id"]: d.make_regions(self._region_rng, self.org_id, p, now) for p in self.projects}
        self._mutation_rng = random.Random(f"{seed}:mutations")

    # ---- serialisation ----------------------------------------------------------------------------
    @staticmethod
    def blob(row: d.EventRow) -> bytes:
        """orjson bytes of one event, cached on the row until the row changes."""
        if row.blob is None:
            row.blob = _dumps(row.item)
        return row.blob

    def serialize_all(self) -> None:
        """Pre-serialise every event (done once at startup so the first pages are as fast as the rest)."""
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for row in self.events:
                if row.blob is None:
                    row.blob = _dumps(row.item)
        finally:
            if gc_was_enabled:
                gc.enable()
            gc.freeze()

    # ---- consent-event queries --------------------------------------------------------------------
    def event_page(self, query: ListQuery) -> tuple[int, list[bytes]]:
        """(total, item blobs of the page) for a consent-events query."""
        with self.lock:
            rows = self._event_candidates(query)
            total = len(rows)
            off, lim = query.offset, query.limit
            if off >= total:
                return total, []
            # The page as a slice [lo, hi) of the ascending order; desc reads it backwards.
            lo, hi = (max(0, total - off - lim), total - off) if query.desc else (off, min(total, off + lim))
            sort = query.sort or "dateCreated"
            page = _shuffled_ties(rows, lo, hi, sort) if query.shuffle_ties and sort != "id" else rows[lo:hi]
            if query.desc:
                page.reverse()
            return total, [row.blob or self.blob(row) for row in page]

    def _event_candidates(self, query: ListQuery) -> list[d.EventRow]:
        """Matching rows in ascending (sort field, id) order; cached per query until data changes."""
        sort = query.sort or "dateCreated"
        by_updated = query.date_field == "dateUpdated"
        if sort == "dateUpdated" and not query.filters and by_updated:
            return self._window(query)  # a slice of the primary index, no cache needed
        if sort in STABLE_SORTS and not query.filters and query.start is None and query.end is None:
            return self._order(sort)
        key = (sort, query.date_field, query.start, query.end, tuple(sorted(query.filters.items())), self.version)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        rows = self._window(query)
        for name, values in query.filters.items():
            match = _matcher(name, values)
            rows = [row for row in rows if match(row.item)]
        if sort != "dateUpdated":
            rows = sorted(rows, key=_sort_key(sort))
        self._cache[key] = rows
        while len(self._cache) > 32:
            self._cache.popitem(last=False)
        return rows

    def _order(self, sort: str) -> list[d.EventRow]:
        """All events in (sort, id) order, kept up to date on inserts (updates cannot move them)."""
        rows = self._orders.get(sort)
        if rows is None:
            rows = self._orders[sort] = sorted(self.events, key=_sort_key(sort))
        return rows

    def _window(self, query: ListQuery) -> list[d.EventRow]:
        """Rows with the filter date in [start, end), in (dateUpdated, id) order."""
        if query.date_field != "dateUpdated" and (query.start is not None or query.end is not None):
            get = _created if query.date_field == "dateCreated" else _consented
            start, end = query.start or -(2**62), query.end or 2**62
            return [row for row in self.events if start <= get(row) < end]
        lo = 0 if query.start is None else bisect.bisect_left(self.events, query.start, key=_upd)
        hi = len(self.events) if query.end is None else bisect.bisect_left(self.events, query.end, key=_upd)
        return self.events[lo:hi] if (lo, hi) != (0, len(self.events)) else self.events

    # ---- small resources --------------------------------------------------------------------------
    def list_items(self, resource: str, query: ListQuery, project_id: str | None = None) -> tuple[int, list[dict]]:
        with self.lock:
            items = [d.public(item) for item in self._items(resource, project_id)]
        date_field = query.date_field if resource in ("compliance-requests", "compliance-requests-events") else None
        if date_field and (query.start is not None or query.end is not None):
            lo, hi = query.start or -(2**62), query.end or 2**62
            items = [i for i in items if lo <= (d.to_ms(i[date_field]) or 0) < hi]
        for name, values in query.filters.items():
            match = _project_matcher(values) if name == "projectIds" else _text_matcher(name, values)
            items = [i for i in items if match(i)]
        sort = query.sort or ("dateCreated" if "dateCreated" in SORTS[resource] else "id")
        if query.shuffle_ties and sort != "id":
            random.Random().shuffle(items)  # then a stable sort on the value alone leaves ties random
            items.sort(key=lambda i: _sortable(i.get(sort)), reverse=query.desc)
        else:
            items.sort(key=lambda i: (_sortable(i.get(sort)), i.get("id") or ""), reverse=query.desc)
        return len(items), items[query.offset:query.offset + query.limit]

    def _items(self, resource: str, project_id: str | None) -> list[dict]:
        if resource == "projects":
            return self.projects
        if resource == "consent-types":
            return self.consent_types[project_id] if project_id else [t for ts in self.consent_types.values() for t in ts]
        if resource == "compliance-requests":
            return self.requests
        if resource == "compliance-requests-events":
            return self.request_events
        if resource == "tracker-scan-history":
            return [s for s in self.scans if project_id in (None, s["projectId"])]
        if resource == "data-systems":
            return self.data_systems
        if resource == "regions":
            return self.regions[project_id] if project_id else [r for rs in self.regions.values() for r in rs]
        raise KeyError(resource)

    def truth(self, resource: str) -> list[dict]:
        """Every item of a resource as the API would serve it (events in (dateUpdated, id) order)."""
        if resource not in RESOURCES:
            raise KeyError(resource)
        with self.lock:
            if resource == "consent-events":
                return [orjson.loads(self.blob(row)) for row in self.events]
            return orjson.loads(orjson.dumps([d.public(i) for i in self._items(resource, None)]))

    # ---- mutations ----------------------------------------------------------------------------------
    def _rng(self, seed: int | None) -> random.Random:
        return random.Random(f"{seed}:mutate") if seed is not None else self._mutation_rng

    def _changed(self) -> None:
        self.version += 1
        self._cache.clear()

    def insert_events(self, n: int, kind: str = "banner", seed: int | None = None) -> list[str]:
        """Add `n` events. kind: banner (created now), late (created 20-50 min ago), import (old consentDate)."""
        if n <= 0:
            return []
        with self.lock:
            rows = self._new_events(self._rng(seed), self.clock.now_ms(), n, kind)
            self._insert_rows(rows)
            return [row.id for row in rows]

    def _new_events(self, rng: random.Random, now: int, n: int, kind: str) -> list[d.EventRow]:
        """`n` new events of whole sessions (the last one cut), written up to `now`."""
        rows: list[d.EventRow] = []
        while len(rows) < n:
            project = rng.choice(self.projects)
            sess = d.new_session(rng, project, rng.choice(self.users))
            types = d.banner_types(self.consent_types[project["id"]])
            start = now - rng.randint(20 * d.MINUTE_MS, 50 * d.MINUTE_MS) if kind == "late" else now - 2000
            rows.extend(d.session_events(rng, self.org_id, sess, types, start, now + 1,
                                         kind="import" if kind == "import" else "banner", update_rate=0))
        del rows[n:]
        return rows

    def _add_rows(self, rows: list[d.EventRow]) -> None:
        for row in rows:
            self.event_by_id[row.id] = row
        _merge(self.events, rows, _row_key)
        self._changed()

    def _insert_rows(self, rows: list[d.EventRow]) -> None:
        self._add_rows(rows)
        for sort, order in self._orders.items():
            _merge(order, rows, _sort_key(sort))

    def update_events(self, n: int, seed: int | None = None) -> list[str]:
        """Change `n` random events: new consentState, version + 1, dateUpdated = now."""
        with self.lock:
            rng, now = self._rng(seed), self.clock.now_ms()
            chosen = rng.sample(range(len(self.events)), min(n, len(self.events)))
            rows = [self.events[i] for i in sorted(chosen, reverse=True)]
            for i in sorted(chosen, reverse=True):
                del self.events[i]
            for row in rows:
                _change_event(row, now)
            self._add_rows(rows)
            return [row.id for row in rows]

    def delete_events(self, n: int, seed: int | None = None) -> list[str]:
        """Erase `n` random events: the API stops serving them (a privacy erasure or a purge)."""
        if n <= 0:
            return []
        with self.lock:
            rng = self._rng(seed)
            chosen = sorted(rng.sample(range(len(self.events)), min(n, len(self.events))), reverse=True)
            gone = [self.events.pop(i) for i in chosen]
            erased = {row.id for row in gone}
            for row in gone:
                del self.event_by_id[row.id]
            for sort, order in self._orders.items():
                self._orders[sort] = [row for row in order if row.id not in erased]
            self._changed()
            return [row.id for row in gone]

    def finish_scans(self) -> int:
        """Complete every running scan with real results."""
        with self.lock:
            rng, done = self._mutation_rng, 0
            for config in self.scans:
                for scan in config["scanHistory"]:
                    if scan["status"] == "running":
                        scan.update(status="completed", results=d.scan_results(rng), domainsCount=rng.randint(1, 6))
                        done += 1
            self._changed()
            return done

    def new_scans(self, n: int, seed: int | None = None) -> int:
        """Append `n` completed manual scans dated now, round-robin over the projects."""
        with self.lock:
            rng, now = self._rng(seed), self.clock.now_ms()
            for i in range(n):
                config = self.scans[i % len(self.scans)]
                project = self.project_by_id[config["projectId"]]
                config["scanHistory"].append(d.new_scan(rng, project, now, "manual", "completed"))
            self._changed()
            return n

    def advance_compliance(self, n: int, seed: int | None = None) -> list[str]:
        """Move up to `n` unresolved requests one status forward (one compliance-requests-event each)."""
        with self.lock:
            rng, now = self._rng(seed), self.clock.now_ms()
            open_requests = [r for r in self.requests if r["status"] != "resolved"]
            moved = []
            for req in rng.sample(open_requests, min(n, len(open_requests))):
                event = d.advance_request(rng, self.org_id, req, now, self.account_id)
                if event:
                    self.request_events.append(event)
                    moved.append(req["id"])
            self._changed()
            return moved

    def insert_compliance(self, n: int, seed: int | None = None) -> list[str]:
        """Add `n` new pending_verification requests dated now."""
        with self.lock:
            rng, now = self._rng(seed), self.clock.now_ms()
            ids = []
            for _ in range(n):
                req = d.new_compliance_request(rng, self.org_id, rng.choice(self.projects), rng.choice(self.users), now)
                self.requests.append(req)
                self.request_events.append(d.request_event(rng, self.org_id, req, "created", now, None,
                                                           {"toStatus": "pending_verification"}))
                ids.append(req["id"])
            self._changed()
            return ids

    def bulk_import(self, n: int, seed: int | None = None) -> list[str]:
        """Add `n` imported events written in one transaction: one shared dateCreated = dateUpdated = now."""
        if n <= 0:
            return []
        with self.lock:
            now = self.clock.now_ms()
            rows = self._new_events(self._rng(seed), now, n, "import")
            stamp = d.iso(now)
            for row in rows:
                row.crt = row.upd = now
                row.item["dateCreated"] = row.item["dateUpdated"] = stamp
            self._insert_rows(rows)
            return [row.id for row in rows]

    def late_projects(self, n: int, seed: int | None = None) -> list[str]:
        """Add `n` projects that appear now but carry dateCreated = dateUpdated = 30 days ago (a restore)."""
        if n <= 0:
            return []
        with self.lock:
            rng, now = self._rng(seed), self.clock.now_ms()
            at = now - LATE_MS
            # Generate the whole list again so names/units continue the sequence; keep only the new tail.
            made = d.make_projects(rng, self.org_id, len(self.projects) + n, now, self.config.days)[-n:]
            for project in made:
                project["dateCreated"] = project["dateUpdated"] = d.epoch_for(project, at)
                project["_importer"] = d.new_uuid(rng)
                self.projects.append(project)
                self.project_by_id[project["id"]] = project
                self.consent_types[project["id"]] = d.make_consent_types(rng, self.org_id, project, now)
                self.regions[project["id"]] = d.make_regions(rng, self.org_id, project, now)
            self._changed()
            return [p["id"] for p in made]

    def late_scans(self, n: int, seed: int | None = None) -> list[str]:
        """Give `n` projects a completed scan dated 30 days ago (placed by date in its history)."""
        with self.lock:
            rng, now = self._rng(seed), self.clock.now_ms()
            touched = []
            for config in self.scans[:max(0, n)]:
                project = self.project_by_id[config["projectId"]]
                scan = d.new_scan(rng, project, now - LATE_MS, "manual", "completed")
                bisect.insort(config["scanHistory"], scan, key=lambda s: d.to_ms(s["date"]) or 0)
                touched.append(project["id"])
            self._changed()
            return touched

    def mutate(self, insert_events: int = 0, update_events: int = 0, late_events: int = 0, import_events: int = 0,
               finish_scans: bool = False, new_scans: int = 0, advance_compliance: int = 0,
               insert_compliance: int = 0, bulk_import: int = 0, late_project: int = 0, late_scan: int = 0,
               seed: int | None = None,
               delete_events: int = 0) -> dict[str, Any]:
        """All mutations in one call (what POST /_sandbox/mutate runs); returns the ids/counts changed."""
        with self.lock:
            if seed is not None:
                self._mutation_rng = random.Random(f"{seed}:mutate")
            return {
                "inserted": self.insert_events(insert_events),
                "updated": self.update_events(update_events) if update_events else [],
                "late": self.insert_events(late_events, kind="late"),
                "imported": self.insert_events(import_events, kind="import"),
                "finished_scans": self.finish_scans() if finish_scans else 0,
                "new_scans": self.new_scans(new_scans) if new_scans else 0,
                "advanced_compliance": self.advance_compliance(advance_compliance) if advance_compliance else [],
                "inserted_compliance": self.insert_compliance(insert_compliance) if insert_compliance else [],
                "bulk_imported": self.bulk_import(bulk_import),
                "late_projects": self.late_projects(late_project),
                "late_scans": self.late_scans(late_scan) if late_scan else [],
                "deleted": self.delete_events(delete_events),
                "now": d.iso(self.clock.now_ms()),
            }

    # ---- clock ------------------------------------------------------------------------------------
    def set_now(self, now: datetime | str) -> str:
        with self.lock:
            self.clock.set(now)
            return d.iso(self.clock.now_ms())

    def advance_clock(self, seconds: float) -> str:
        with self.lock:
            self.clock.advance(seconds)
            return d.iso(self.clock.now_ms())

    def now_iso(self) -> str:
        return d.iso(self.clock.now_ms())


def _merge(target: list[d.EventRow], rows: list[d.EventRow], key: Callable[[d.EventRow], tuple]) -> None:
    """Add rows to a list sorted by `key`, keeping it sorted (bisect for a few, timsort for many)."""
    if len(rows) > 64:
        target.extend(rows)
        target.sort(key=key)  # near-linear on an almost sorted list
    else:
        for row in rows:
            bisect.insort(target, row, key=key)


def _change_event(row: d.EventRow, now: int) -> None:
    item = row.item
    if item["consentState"] in ("implied", "viewed"):
        item["consentAction"] = "user_click"
        item["consentState"] = "accepted"
    else:
        item["consentState"] = "declined" if item["consentState"] == "accepted" else "accepted"
        if item["consentAction"] == "implied":
            item["consentAction"] = "user_click"
    item["version"] += 1
    item["dateUpdated"] = d.iso(now)
    row.upd = now
    row.blob = None


def _sort_key(sort: str) -> Callable[[d.EventRow], tuple]:
    if sort == "dateCreated":
        return lambda r: (r.crt, r.id)
    if sort == "consentDate":
        return lambda r: (r.cdate, r.id)
    if sort == "id":
        return lambda r: (r.id, "")
    return lambda r: (r.item[sort], r.id)


def _shuffled_ties(rows: list[d.EventRow], lo: int, hi: int, sort: str) -> list[d.EventRow]:
    """rows[lo:hi] as a server without an id tie-break serves it: each run of equal sort values in a fresh
    random order (the whole run is shuffled, also the part outside the page, so pages overlap and miss)."""
    value = _sort_key(sort)
    a, b = lo, hi
    while a > 0 and value(rows[a - 1])[0] == value(rows[lo])[0]:
        a -= 1
    while b < len(rows) and value(rows[b])[0] == value(rows[hi - 1])[0]:
        b += 1
    segment, rng, start = rows[a:b], random.Random(), 0
    for i in range(1, len(segment) + 1):
        if i == len(segment) or value(segment[i])[0] != value(segment[start])[0]:
            group = segment[start:i]
            rng.shuffle(group)
            segment[start:i] = group
            start = i
    return segment[lo - a:hi - a]


def _sortable(value: object) -> tuple:
    """Sort key that puts None first and compares epoch ints and ISO strings by time."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, int | float):
        return (1, d.to_ms(value) or 0, "")
    return (2, 0, str(value))


def _project_matcher(values: tuple[str, ...]) -> Callable[[dict], bool]:
    accepted = frozenset(values)
    return lambda item: item.get("project", item.get("projectId")) in accepted


def _dumps(item: dict) -> bytes:
    # orjson hands back bytes objects that keep their oversized write buffer (~8 KB for a 1 KB event);
    # copying to an exact-size object cuts resident memory ~8x when a million events are cached.
    return memoryview(orjson.dumps(item)).tobytes()


def _text_matcher(name: str, values: tuple[str, ...]) -> Callable[[dict], bool]:
    """Equality on the query-string form of a value (true/false for booleans, digits for ints)."""
    accepted = frozenset(v.lower() for v in values)

    def text(value: object) -> str:
        return str(value).lower()

    return lambda item: text(item.get(name)) in accepted
