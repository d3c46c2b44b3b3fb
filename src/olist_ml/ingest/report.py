"""What an ingest reports: one `TableReport` per source table, one `IngestReport` per run, and the
names of the tables ingest writes besides `stg_*` (both engines)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Tables that ingest (re)builds; everything else in an existing warehouse is carried over.
QUARANTINE_TABLE = "ingest_quarantine"


RUNS_TABLE = "ingest_runs"


MAX_RAW = 1000  # raw_value is cut to this many characters in the quarantine


@dataclass
class TableReport:
    key: str
    stg: str
    file: str  # file name as found in SOURCE ("" when the optional file is absent)
    loaded: int = 0  # rows written to stg
    quarantined: int = 0  # rows left out (distinct records)
    warnings: list[str] = field(default_factory=list)
    sha256: str = ""


@dataclass
class IngestReport:
    source: str
    source_kind: str  # "folder" | "zip"
    warehouse: str
    content_hash: str
    run_id: str
    tables: list[TableReport]
    checks: dict[str, int]  # named cross-table counts (fk_*, orders_without_items, ...)
    warnings: list[str]  # every warning, one line each, table warnings included
    groups_loaded: list[str]  # "ecommerce", "geolocation", "marketing" (partial marketing noted in warnings)
    skipped: list[str]  # optional tables whose file was not found
    kept_tables: list[str]  # tables carried over from the previous warehouse
    elapsed_s: float = 0.0
    rewritten: list[str] = field(default_factory=list)  # ingest tables written (unchanged ones are left alone)
    strict: bool = False
    date_window: list[str] = field(default_factory=list)  # plausible dates [first, last] (ISO days), see module doc

    @property
    def quarantined(self) -> int:
        return sum(t.quarantined for t in self.tables)

    @property
    def loaded(self) -> dict[str, int]:
        return {t.stg: t.loaded for t in self.tables}

    def table(self, key: str) -> TableReport:
        for t in self.tables:
            if t.key == key or t.stg == key:
                return t
        raise KeyError(key)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quarantined"] = self.quarantined
        return d
