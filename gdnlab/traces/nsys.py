"""Reader for Nsight Systems SQLite exports (``nsys export --type sqlite``). Times are in ns.

Schemas differ between nsys versions (columns and tables come and go), so every query is built from
what ``PRAGMA table_info`` reports: missing optional columns become -1 / NA. Only
``CUPTI_ACTIVITY_KIND_KERNEL`` (with ``start``/``end`` and a kernel name) is required; when a table a
figure needs is absent (``StringIds`` for registered NVTX texts and API names, the CUDA API tables
that link kernels to NVTX ranges, ``NVTX_EVENTS``) the reader says so in :attr:`NsysSource.warnings`
instead of showing zeros or ``<string N>`` in silence. Times that are NULL, negative, not integers,
or an end before its start are refused (:class:`~.errors.TraceDataError`).

Provenance: :meth:`NsysSource.read_metadata` reports whether the export says gdnlab captured it
(``gdnlab_capture``: the profiled command in ``META_DATA_CAPTURE`` names gdnlab, as
``gdnlab capture`` records ``python -m gdnlab.workload``) and whether it carries the synthetic
marker table (:data:`SYNTHETIC_TABLE`, written by :mod:`.synthetic`).

Speed: integer columns are read with one ``group_concat(printf(...))`` per chunk of rows, run in
threads (SQLite releases the GIL while it steps) and parsed with ``numpy.fromstring``; names stay
StringIds ids until they are mapped once per distinct id into categoricals. No Python loop touches
a row.
"""
from __future__ import annotations

import os
import sqlite3
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from .errors import TraceDataError
from .files import regular_file
from .metadata import captured_by_gdnlab, find_nsys_version, gpus_from_nsys
from .names import short_kernel_name

__all__ = ["NsysSource", "SQLITE_MAGIC", "KERNEL_TABLE", "RUNTIME_TABLE", "DRIVER_TABLE", "NVTX_TABLE",
           "NVTX_PUSHPOP", "NVTX_STARTEND", "NVTX_DOMAIN_CREATE", "SYNTHETIC_TABLE", "decode_global_tid"]

SQLITE_MAGIC = b"SQLite format 3\x00"
KERNEL_TABLE = "CUPTI_ACTIVITY_KIND_KERNEL"
RUNTIME_TABLE = "CUPTI_ACTIVITY_KIND_RUNTIME"
DRIVER_TABLE = "CUPTI_ACTIVITY_KIND_DRIVER"
NVTX_TABLE = "NVTX_EVENTS"
NVTX_PUSHPOP, NVTX_STARTEND, NVTX_DOMAIN_CREATE = 59, 60, 75
#: a table (name, value) that marks an export as generated, not captured (see :mod:`.synthetic`)
SYNTHETIC_TABLE = "GDNLAB_SYNTHETIC"
KERNEL_NAME_COLUMNS = ("demangledName", "name", "mangledName", "shortName")
_NULL = -(2**63) + 7          # sentinel for SQL NULL in integer columns
#: column order of the raw frames (both readers)
KERNEL_COLUMNS = ["name", "short_name", "start_ns", "end_ns", "duration_ns", "device", "stream", "correlation_id",
                  "grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "graph_node_id", "global_pid", "pid"]
API_COLUMNS = ["name", "start_ns", "end_ns", "duration_ns", "correlation_id", "global_tid", "pid", "tid", "api"]
_CHUNK_ROWS = 250_000


def decode_global_tid(gtid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """nsys globalTid/globalPid -> (pid, tid), as nsys does: ``pid = (g >> 24) & 0xFFFFFF``,
    ``tid = g & 0xFFFFFF``. Negative inputs (unknown) give -1."""
    g = np.asarray(gtid, np.int64)
    pid = np.where(g >= 0, (g >> 24) & 0xFFFFFF, -1)
    tid = np.where(g >= 0, g & 0xFFFFFF, -1)
    return pid, tid


def _parse_ints(text: bytes | str | None, ncols: int) -> np.ndarray:
    """Comma-separated integers (``group_concat`` output) -> int64 array of ``ncols`` columns.
    Raises ``ValueError`` when an item is not an integer (a REAL, ``Inf``, text)."""
    if not text:
        return np.zeros((0, ncols), np.int64)
    if isinstance(text, str):
        text = text.encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        arr = np.fromstring(text, dtype=np.int64, sep=",")
    if arr.size and not text.endswith(str(arr[-1]).encode()):  # pragma: no cover - numpy stopped early
        arr = np.array([int(v) for v in text.split(b",")], dtype=np.int64)
    return arr.reshape(-1, ncols)


def _check_header(path: Path) -> None:
    """Cheap checks before SQLite sees the file: empty, not SQLite, truncated (header page count)."""
    size = regular_file(path).st_size
    if size == 0:
        raise TraceDataError(path, "empty file (0 bytes), not an nsys SQLite export")
    with path.open("rb") as f:
        head = f.read(100)
    if not head.startswith(SQLITE_MAGIC):
        raise TraceDataError(path, "not an SQLite database (no 'SQLite format 3' header); expected an nsys "
                                   "SQLite export (nsys export --type sqlite) or a Kineto JSON trace")
    if len(head) < 100:
        raise TraceDataError(path, f"truncated SQLite file: {size} bytes, shorter than the 100-byte header")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    header_valid = head[24:28] == head[92:96] and pages > 0
    if header_valid and size < page_size * pages:
        raise TraceDataError(path, f"truncated SQLite file: header says {page_size * pages} bytes "
                                   f"({pages} pages of {page_size}), file has {size}")


class NsysSource:
    """One nsys SQLite export, opened read-only. Construction validates the file (raising
    :class:`~.errors.TraceDataError`); the ``read_*`` methods return raw frames that
    :class:`~gdnlab.traces.Trace` assembles. ``warnings`` collects what the export lacks (filled at
    construction and while frames are read)."""

    kind = "nsys"

    def __init__(self, path: str | Path, *, workers: int | None = None) -> None:
        self.path = Path(path)
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.warnings: list[str] = []
        _check_header(self.path)
        with self._guard("reading the table list"), self._connect() as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            self.schema: dict[str, dict[str, str]] = {
                t: {row[1]: (row[2] or "").upper() for row in db.execute(f'PRAGMA table_info("{t}")')}
                for t in tables}
        if KERNEL_TABLE not in self.schema:
            present = ", ".join(sorted(self.schema)) or "none"
            raise TraceDataError(self.path, f"no {KERNEL_TABLE} table, so no CUDA kernels were recorded "
                                            f"(capture with -t cuda and make sure kernels ran inside the capture "
                                            f"range); tables present: {present}")
        missing = {"start", "end"} - set(self.schema[KERNEL_TABLE])
        if missing:
            raise TraceDataError(self.path, f"{KERNEL_TABLE} lacks column(s) {sorted(missing)}")
        self._check_tables()

    def _check_tables(self) -> None:
        """Refuse an export whose kernels cannot be named; note the tables a figure needs that are absent."""
        t = KERNEL_TABLE
        names = [c for c in KERNEL_NAME_COLUMNS if self.has(t, c)]
        if not names:
            raise TraceDataError(self.path, f"{t} has no kernel name column (one of {', '.join(KERNEL_NAME_COLUMNS)})")
        strings = self.has("StringIds", "value")
        if not strings and not self._is_text(t, names[0]) and self._has_rows(t):
            raise TraceDataError(self.path, f"{t}.{names[0]} holds StringIds ids but the export has no StringIds "
                                            f"table, so no kernel can be named (re-export the .nsys-rep with "
                                            f"'nsys export --type sqlite')")
        api = [a for a in (RUNTIME_TABLE, DRIVER_TABLE) if self.has(a)]
        if not api:
            self.warnings.append(f"no {RUNTIME_TABLE} table: kernels cannot be linked to the CUDA calls that "
                                 f"launched them, so NVTX ranges get no GPU time (capture with -t cuda)")
        elif not strings and any(self.has(a, "nameId") for a in api):
            self.warnings.append("no StringIds table: CUDA API call names (launch_api) are unknown")
        if not self.has(NVTX_TABLE):
            self.warnings.append(f"no {NVTX_TABLE} table: the trace has no NVTX ranges (capture with -t nvtx)")

    def _has_rows(self, table: str) -> bool:
        with self._guard(f"reading {table}"), self._connect() as db:
            return db.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is not None

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def _check_times(self, table: str, what: str, start: np.ndarray, end: np.ndarray) -> None:
        """Refuse NULL, negative and reversed (end < start) times of ``what`` rows (raw int64, NULL as
        ``_NULL``)."""
        problems = [("without a start time (NULL)", start == _NULL), ("without an end time (NULL)", end == _NULL)]
        known = (start != _NULL) & (end != _NULL)
        problems += [("with a negative time", known & ((start < 0) | (end < 0))),
                     ("that end before they start", known & (end < start))]
        for text, bad in problems:
            n = int(bad.sum())
            if n:
                i = int(np.flatnonzero(bad)[0])
                ex = f"start {start[i] if start[i] != _NULL else 'NULL'}, end {end[i] if end[i] != _NULL else 'NULL'}"
                raise TraceDataError(self.path, f"{table}: {n} of {len(start)} {what} {text} (first: {ex}); "
                                                f"a trace's times must be integer ns with start <= end")

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise TraceDataError(self.path, f"SQLite error while {what}: {e} (truncated or corrupt file?)") from e

    def has(self, table: str, column: str | None = None) -> bool:
        cols = self.schema.get(table)
        return cols is not None and (column is None or column in cols)

    def _int_columns(self, table: str, exprs: dict[str, str], where: str = "", text: str | None = None,
                     rowid: bool = False) -> tuple[np.ndarray, list[str] | None]:
        """Integer SQL expressions of ``table`` (rows matching ``where``) as one int64 block of shape
        (len(exprs), rows), NULL -> ``_NULL`` (with ``rowid``: one more row, the rowids, first, and the
        rows put in rowid order); plus, if ``text`` is given, that text expression per row (NULL -> "").

        One query per chunk of rowids, run in threads (SQLite releases the GIL while it steps), with
        one ``group_concat`` per column in the same scan, so all columns come back in the same row
        order, already column-major; numpy parses each string.
        """
        aggs = [f"group_concat(coalesce({e}, {_NULL}))" for e in exprs.values()]
        if rowid:
            aggs.insert(0, "group_concat(rowid)")
        k = len(aggs)
        labels = (["rowid"] if rowid else []) + [e.strip('"') for e in exprs.values()]
        if text is not None:  # every item starts with char(30): empty strings keep their separator
            aggs.append(f"group_concat(char(30) || coalesce({text}, ''), char(31))")
        cond = f" AND ({where})" if where else ""
        with self._guard(f"reading {table}"), self._connect() as db:
            lo, hi = db.execute(f'SELECT min(rowid), max(rowid) FROM "{table}"').fetchone()
        if lo is None:
            return np.zeros((k, 0), np.int64), ([] if text is not None else None)
        step = max(_CHUNK_ROWS, (hi - lo + 1) // (4 * self.workers) + 1)
        bounds = [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]
        sql = f'SELECT {", ".join(aggs)} FROM "{table}" WHERE rowid BETWEEN ? AND ?{cond}'

        def chunk(b: tuple[int, int]) -> tuple[list[np.ndarray], list[str] | None]:
            with self._guard(f"reading {table}"):
                db = self._connect()
                db.text_factory = bytes          # numpy parses bytes; skips building a 100 MB str
                try:
                    row = db.execute(sql, b).fetchone()
                finally:
                    db.close()
            cols = []
            for label, v in zip(labels, row[:k]):
                try:
                    cols.append(_parse_ints(v, 1).ravel())
                except ValueError:
                    bad = next((x for x in bytes(v).split(b",") if not x.lstrip(b"-").isdigit()), b"?")
                    raise TraceDataError(self.path, f"{table}.{label}: a value that is not an integer "
                                                    f"({bad.decode('utf-8', 'replace')[:40]!r}); nsys writes "
                                                    f"integer ns and ids") from None
            texts = None
            if text is not None:
                texts = row[k].decode("utf-8", "replace")[1:].split("\x1f\x1e") if row[k] is not None else []
                if len(texts) != len(cols[0]):   # a text contained char(31): read this chunk row by row
                    with self._connect() as db2:
                        texts = [r[0] for r in db2.execute(
                            f'SELECT coalesce({text}, \'\') FROM "{table}" WHERE rowid BETWEEN ? AND ?{cond}', b)]
            return cols, texts

        if len(bounds) == 1 or self.workers == 1:
            parts = [chunk(b) for b in bounds]
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                parts = list(pool.map(chunk, bounds))
        total = sum(len(p[0][0]) for p in parts)
        block = np.empty((k, total), np.int64)
        off = 0
        for cols, _ in parts:
            m = len(cols[0])
            for i, c in enumerate(cols):
                if len(c) != m:
                    raise TraceDataError(self.path, f"{table}: column {i} has {len(c)} values for {m} rows")
                block[i, off:off + m] = c
            off += m
        texts = [t for _, ts in parts for t in ts] if text is not None else None
        if rowid and total > 1 and not (np.diff(block[0]) > 0).all():  # put rows in rowid order
            order = np.argsort(block[0], kind="stable")
            block = block[:, order]
            texts = [texts[i] for i in order] if texts is not None else None
        return block, texts

    def _int_frame(self, table: str, exprs: dict[str, str], nullable: tuple[str, ...] = (),
                   rowid: bool = False, times: str | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
        """:meth:`_int_columns` as a DataFrame, and the rowids if asked for. NULL becomes -1, or NA
        for the ``nullable`` columns (Int64). The int64 columns share one block: nothing is copied.
        ``times``: what the rows are (e.g. ``"kernels"``); their ``start_ns``/``end_ns`` are checked
        with :meth:`_check_times` before NULLs are replaced."""
        plain_names = [k for k in exprs if k not in nullable]
        null_names = [k for k in exprs if k in nullable]
        block, _ = self._int_columns(table, {k: exprs[k] for k in plain_names + null_names}, rowid=rowid)
        first = 1 if rowid else 0
        plain = block[first:first + len(plain_names)]
        if times is not None:
            self._check_times(table, times, plain[plain_names.index("start_ns")], plain[plain_names.index("end_ns")])
        np.putmask(plain, plain == _NULL, -1)
        df = pd.DataFrame(plain.T, columns=plain_names, copy=False)
        for i, k in enumerate(null_names):
            v = block[first + len(plain_names) + i]
            df[k] = pd.arrays.IntegerArray(v.copy(), v == _NULL)
        return df, (block[0] if rowid else None)

    def _strings(self, ids: np.ndarray, what: str = "names", required: bool = False) -> pd.Categorical:
        """StringIds ids -> categorical of their values (looked up once per distinct id). An id that
        StringIds lacks becomes ``"<string ID>"`` and a warning naming ``what``; with ``required``,
        none resolving at all is an error."""
        inv, uniq = pd.factorize(np.asarray(ids, np.int64))   # hash-based: no sort of 10^6 ids
        values: dict[int, str] = {}
        if self.has("StringIds") and len(uniq):
            col = "value" if self.has("StringIds", "value") else None
            if col:
                with self._guard("reading StringIds"), self._connect() as db:
                    for start in range(0, len(uniq), 900):
                        part = [int(u) for u in uniq[start:start + 900]]
                        q = f"SELECT id, {col} FROM StringIds WHERE id IN ({','.join('?' * len(part))})"
                        values.update(db.execute(q, part).fetchall())
        names = [values.get(int(u), "" if u == _NULL else f"<string {int(u)}>") for u in uniq]
        lost = np.array([int(u) != _NULL and int(u) not in values for u in uniq], dtype=bool)
        if lost.any():
            n_rows = int(lost[inv].sum())
            if required and n_rows == int((np.asarray(ids) != _NULL).sum()):
                raise TraceDataError(self.path, f"none of the {n_rows} {what} is in StringIds, so none can be "
                                                f"named (a damaged or hand-made export?)")
            self._warn(f"{n_rows} {what} not found in StringIds; shown as '<string ID>'"
                       if self.has("StringIds", "value") else
                       f"no StringIds table: {n_rows} {what} cannot be named; shown as '<string ID>'")
        codes, cats = pd.factorize(pd.Index(names, dtype=object))
        cat = pd.Categorical.from_codes(codes[inv] if len(inv) else inv.astype(np.int64),
                                        categories=pd.Index(cats, dtype=object))
        return cat

    def _text_column(self, table: str, column: str, rowids: np.ndarray) -> pd.Categorical:
        """A TEXT column (inline names), aligned on ``rowids``."""
        with self._guard(f"reading {table}.{column}"), self._connect() as db:
            rows = db.execute(f'SELECT rowid, "{column}" FROM "{table}"').fetchall()
        s = pd.Series(dict(rows), dtype=object).reindex(rowids).fillna("")
        return pd.Categorical(s.to_numpy(dtype=object))

    def _is_text(self, table: str, column: str) -> bool:
        """Whether a name column holds the names themselves (TEXT) rather than StringIds ids: by the
        declared type, or, when none is declared, by the storage type of its first non-NULL value."""
        decl = self.schema[table][column]
        if "INT" in decl:
            return False
        if "TEXT" in decl or "CHAR" in decl or "CLOB" in decl:
            return True
        with self._guard(f"reading {table}.{column}"), self._connect() as db:
            row = db.execute(f'SELECT typeof("{column}") FROM "{table}" WHERE "{column}" IS NOT NULL '
                             f"LIMIT 1").fetchone()
        return row is not None and row[0] == "text"

    def _name_column(self, table: str, candidates: tuple[str, ...], rowids: np.ndarray,
                     ints: dict[str, np.ndarray], what: str = "names",
                     required: bool = False) -> pd.Categorical | None:
        for c in candidates:
            if not self.has(table, c):
                continue
            if c in ints:
                return self._strings(ints[c], what, required)
            return self._text_column(table, c, rowids)
        return None

    # ------------------------------------------------------------------ raw frames
    def _names_and_ints(self, table: str, want: dict[str, str], name_cols: tuple[str, ...],
                        nullable: tuple[str, ...] = (),
                        times: str | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
        """Integer columns ``want`` (output name -> column; absent ones are skipped) plus the integer
        name-id columns among ``name_cols``; returns (frame, name ids, rowids)."""
        exprs = {k: f'"{c}"' for k, c in want.items() if self.has(table, c)}
        present = [c for c in name_cols if self.has(table, c)]
        ids = [c for c in present if not self._is_text(table, c)]
        exprs.update({f"__id_{c}": f'"{c}"' for c in ids})
        # rowids only to align inline-text name columns, which are read by a second query
        df, rowids = self._int_frame(table, exprs, nullable, rowid=len(ids) < len(present), times=times)
        name_ids = {c: df.pop(f"__id_{c}").to_numpy() for c in ids}
        return df, name_ids, rowids

    def read_kernels(self) -> pd.DataFrame:
        """Kernel rows: name, short_name, start_ns, end_ns, duration_ns, device, stream,
        correlation_id, grid_*/block_*, graph_node_id (Int64, NA where absent), global_pid and pid
        (-1 where the export has no globalPid)."""
        t = KERNEL_TABLE
        want = {"start_ns": "start", "end_ns": "end", "device": "deviceId", "stream": "streamId",
                "correlation_id": "correlationId", "global_pid": "globalPid",
                "grid_x": "gridX", "grid_y": "gridY", "grid_z": "gridZ",
                "block_x": "blockX", "block_y": "blockY", "block_z": "blockZ", "graph_node_id": "graphNodeId"}
        name_cols = KERNEL_NAME_COLUMNS
        df, ids, rowids = self._names_and_ints(t, want, name_cols, nullable=("graph_node_id",), times="kernels")
        n = len(df)
        for k in want:
            if k not in df:
                df[k] = pd.array([pd.NA] * n, dtype="Int64") if k == "graph_node_id" else np.full(n, -1, np.int64)
        name = self._name_column(t, name_cols, rowids, ids, "kernel names", required=True)
        name = name if name is not None else pd.Categorical([""] * n)
        has_long = any(self.has(t, c) for c in name_cols[:3])
        short = self._name_column(t, ("shortName",), rowids, ids, "kernel short names") if has_long else None
        if short is None:
            short_cats = [short_kernel_name(c) for c in name.categories]
            codes, uniq = pd.factorize(pd.Index(short_cats, dtype=object))
            short = pd.Categorical.from_codes(codes[name.codes] if len(codes) else name.codes,
                                              categories=pd.Index(uniq, dtype=object))
        df.insert(0, "name", name)
        df.insert(1, "short_name", short)
        df["duration_ns"] = df["end_ns"] - df["start_ns"]
        df["pid"] = decode_global_tid(df["global_pid"].to_numpy())[0]
        return df[KERNEL_COLUMNS]

    def read_api_calls(self) -> pd.DataFrame:
        """CUDA runtime (and driver, if exported) API calls: name, start_ns, end_ns, duration_ns,
        correlation_id, global_tid, pid, tid, api ("runtime"/"driver"). Runtime rows come first."""
        frames = []
        want = {"start_ns": "start", "end_ns": "end", "correlation_id": "correlationId", "global_tid": "globalTid"}
        for table, api in ((RUNTIME_TABLE, "runtime"), (DRIVER_TABLE, "driver")):
            if not self.has(table):
                continue
            name_cols = ("nameId", "name")
            df, ids, rowids = self._names_and_ints(table, want, name_cols, times="CUDA API calls")
            n = len(df)
            for k in want:
                if k not in df:
                    df[k] = np.full(n, -1, np.int64)
            name = self._name_column(table, name_cols, rowids, ids, "CUDA API call names")
            df.insert(0, "name", name if name is not None else pd.Categorical([""] * n))
            df["api"] = api
            frames.append(df)
        if not frames:
            df = pd.DataFrame({"name": pd.Categorical([]), **{k: np.zeros(0, np.int64) for k in want},
                               "api": pd.Series([], dtype=object)})
        elif len(frames) == 1:
            df = frames[0]
        else:
            df = pd.concat(frames, ignore_index=True)
            df["name"] = df["name"].astype("category")
        df["duration_ns"] = df["end_ns"] - df["start_ns"]
        df["pid"], df["tid"] = decode_global_tid(df["global_tid"].to_numpy())
        df["api"] = df["api"].astype("category")
        return df[API_COLUMNS]

    def _event_types(self) -> tuple[int, int, int]:
        """(push/pop, start/end, domain-create) event type ids, from ENUM_NSYS_EVENT_TYPE if present."""
        ids = [NVTX_PUSHPOP, NVTX_STARTEND, NVTX_DOMAIN_CREATE]
        if self.has("ENUM_NSYS_EVENT_TYPE", "name") and self.has("ENUM_NSYS_EVENT_TYPE", "id"):
            with self._guard("reading ENUM_NSYS_EVENT_TYPE"), self._connect() as db:
                m = dict(db.execute("SELECT name, id FROM ENUM_NSYS_EVENT_TYPE").fetchall())
            for i, key in enumerate(("NvtxPushPopRange", "NvtxStartEndRange", "NvtxDomainCreate")):
                ids[i] = int(m.get(key, ids[i]))
        return ids[0], ids[1], ids[2]

    def read_nvtx(self) -> tuple[pd.DataFrame, int]:
        """Closed NVTX push/pop and start/end ranges: text, start_ns, end_ns, kind ("pushpop"/
        "startend"), domain ("default" for the default domain), global_tid, pid, tid, sorted by start.
        Also returns the number of ranges left open (NULL end), which are dropped."""
        t = NVTX_TABLE
        cols = self.schema.get(t, {})
        empty = pd.DataFrame({"text": pd.Series([], dtype=object), "start_ns": np.zeros(0, np.int64),
                              "end_ns": np.zeros(0, np.int64), "kind": pd.Series([], dtype=object),
                              "domain": pd.Series([], dtype=object), "global_tid": np.zeros(0, np.int64)})
        if not cols or not {"start", "end"} <= set(cols):
            return self._finish_nvtx(empty), 0
        pp, se, dc = self._event_types()
        has_type = "eventType" in cols
        exprs = {"start_ns": '"start"', "end_ns": '"end"',
                 "etype": '"eventType"' if has_type else str(pp),
                 "global_tid": '"globalTid"' if "globalTid" in cols else "-1",
                 "domain_id": '"domainId"' if "domainId" in cols else "0"}
        use_ids = "textId" in cols
        if use_ids:
            exprs["text_id"] = '"textId"'
        where = f'"eventType" IN ({pp}, {se})' if has_type else ""
        block, inline = self._int_columns(t, exprs, where=where, text='"text"' if "text" in cols else None)
        v = dict(zip(exprs, block))
        n = block.shape[1]
        codes, cats = pd.factorize(pd.Index(inline if inline is not None else [""] * n, dtype=object))
        cats = np.asarray(cats, dtype=object)
        if use_ids:   # registered strings: textId -> StringIds, appended to the categories
            has_id = v["text_id"] != _NULL
            if has_id.any():
                reg = self._strings(v["text_id"][has_id], "NVTX range texts (textId)")
                codes = codes.copy()
                codes[has_id] = reg.codes + len(cats)
                cats = np.concatenate([cats, np.asarray(reg.categories, dtype=object)])
        text = pd.Categorical.from_codes(codes, categories=pd.Index(cats, dtype=object)) if \
            len(set(cats)) == len(cats) else pd.Categorical(np.asarray(cats, dtype=object)[codes])
        closed = v["end_ns"] != _NULL
        unclosed = int((~closed).sum())
        self._check_times(t, "NVTX ranges", v["start_ns"], np.where(closed, v["end_ns"], v["start_ns"]))
        if unclosed:
            self._warn(f"{unclosed} NVTX range(s) never closed (no end time) are left out")
        df = pd.DataFrame({"text": text[closed], "start_ns": v["start_ns"][closed], "end_ns": v["end_ns"][closed],
                           "kind": pd.Categorical.from_codes((v["etype"][closed] == se).astype(np.int8),
                                                             categories=["pushpop", "startend"]),
                           "global_tid": np.where(v["global_tid"][closed] == _NULL, -1, v["global_tid"][closed]),
                           "domain_id": np.where(v["domain_id"][closed] == _NULL, 0, v["domain_id"][closed])})
        domains = []
        if has_type and "domainId" in cols:
            with self._guard(f"reading {t}"), self._connect() as db:
                domains = db.execute(f"SELECT coalesce(globalTid, -1), domainId, coalesce(text, '') "
                                     f"FROM {t} WHERE eventType = {dc}").fetchall()
        pid = decode_global_tid(df["global_tid"].to_numpy())[0]
        dom_codes = np.zeros(len(df), np.int64)
        dom_names = ["default"]
        if domains:
            dm = pd.DataFrame(domains, columns=["gtid", "domain_id", "domain"])
            dm["pid"] = decode_global_tid(dm["gtid"].to_numpy())[0]
            dm = dm.drop_duplicates(["pid", "domain_id"])
            key = pd.MultiIndex.from_arrays([dm["pid"], dm["domain_id"]])
            idx = key.get_indexer(pd.MultiIndex.from_arrays([pid, df["domain_id"].to_numpy()]))
            found = (idx >= 0) & (df["domain_id"].to_numpy() != 0)
            name_codes, uniq = pd.factorize(pd.Index(dm["domain"].to_numpy(dtype=object), dtype=object))
            dom_names += [u for u in uniq]
            dom_codes[found] = name_codes[idx[found]] + 1
        cat = pd.Categorical.from_codes(dom_codes, categories=pd.Index(dom_names, dtype=object)) \
            if len(set(dom_names)) == len(dom_names) else pd.Categorical(np.asarray(dom_names, dtype=object)[dom_codes])
        df["domain"] = cat
        return self._finish_nvtx(df[["text", "start_ns", "end_ns", "kind", "domain", "global_tid"]]), unclosed

    @staticmethod
    def _finish_nvtx(df: pd.DataFrame) -> pd.DataFrame:
        df = df.sort_values(["start_ns", "end_ns"], ascending=[True, False], kind="stable", ignore_index=True)
        df["pid"], df["tid"] = decode_global_tid(df["global_tid"].to_numpy())
        return df

    # ------------------------------------------------------------------ metadata
    def _name_value(self, table: str) -> dict[str, object]:
        if not (self.has(table, "name") and self.has(table, "value")):
            return {}
        with self._guard(f"reading {table}"), self._connect() as db:
            rows = db.execute(f"SELECT name, value FROM {table}").fetchall()
        out: dict[str, object] = {}
        for k, v in rows:
            if k in out:
                prev = out[k]
                out[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
            else:
                out[k] = v
        return out

    def _rows(self, table: str) -> list[dict]:
        if not self.has(table):
            return []
        with self._guard(f"reading {table}"), self._connect() as db:
            cur = db.execute(f'SELECT * FROM "{table}"')
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def read_metadata(self) -> dict:
        """GPUs (TARGET_INFO_GPU + TARGET_INFO_CUDA_DEVICE), nsys version and export schema
        (META_DATA_EXPORT), capture settings (META_DATA_CAPTURE), session start (UTC ns)."""
        export = self._name_value("META_DATA_EXPORT")
        capture = self._name_value("META_DATA_CAPTURE")
        gpus = gpus_from_nsys(self._rows("TARGET_INFO_GPU"), self._rows("TARGET_INFO_CUDA_DEVICE"))
        start = self._rows("TARGET_INFO_SESSION_START_TIME")
        version = find_nsys_version(export, capture)
        marker = self._name_value(SYNTHETIC_TABLE) if self.has(SYNTHETIC_TABLE) else None
        return {
            "source": "nsys",
            "gpus": gpus,
            "nsys_version": version,
            "export_schema_version": export.get("EXPORT_SCHEMA_VERSION"),
            "export": export,
            "capture": capture,
            "capture_start_utc_ns": start[0].get("utcEpochNs") if start else None,
            "capture_start_utc": start[0].get("utcTime") if start else None,
            "tables": sorted(self.schema),
            "gdnlab_capture": captured_by_gdnlab(capture),
            "synthetic": (marker or {"generator": "unknown"}) if marker is not None else None,
        }
