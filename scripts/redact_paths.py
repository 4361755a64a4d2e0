#!/usr/bin/env python3
"""Remove host paths from captures and logs before they ship in ``traces/<gpu>/``.

Nsight Systems stores the capture's command line, working directory, environment and output file
names in its SQLite export (``META_DATA_CAPTURE``, ``StringIds``, ``TARGET_INFO_SYSTEM_ENV``, ...), and
logs print where files were written. Shipped data names files relative to the repository instead:
this rewrites every text column of every table of a SQLite file, and text files in place, replacing
the host-specific prefixes below and dropping recorded process environments. Timings, counts and
kernel names are untouched.

    python3 scripts/redact_paths.py traces/h200/*.sqlite traces/h200/logs/* benchmarks/results/*_h200.json
"""
from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

#: folders of this repository: an absolute path that reaches one of them becomes repository-relative
_REPO_DIRS = r"traces|tests|gdnlab|scripts|benchmarks|notebooks|docs|reports|\.gpu"
_ABS = r"(?:/[\w.+-]+)+"

#: (pattern, replacement), applied in order: a GPU job's output folder, the checkout, tool installs,
#: interpreters, temporary files, caches, installed packages
RULES = (
    (re.compile(_ABS + r"/out/res_\w+/"), ""),
    (re.compile(_ABS + r"/out/"), ""),
    (re.compile(_ABS + rf"/(?=(?:{_REPO_DIRS})/)"), ""),
    (re.compile(r"/opt/nvidia/nsight-compute/[^/\s\"']+/host/[^/\s\"']+/"), ""),
    (re.compile(r"/opt/nvidia/nsight-compute/[^/\s\"']+/host/[A-Za-z0-9_-]+"), "<nsight-host>"),
    (re.compile(r"/[A-Za-z0-9_./-]*/bin/(python3?(?:\.\d+)?)\b"), r"\1"),
    (re.compile(r"/[A-Za-z0-9_./-]*/(ncu|nsys)\b"), r"\1"),
    (re.compile(r"/tmp/[A-Za-z0-9_.-]+/"), "<tmp>/"),
    (re.compile(r"/tmp/[A-Za-z0-9_.-]+"), "<tmp>"),
    (re.compile(_ABS + r"/\.cache/"), "~/.cache/"),
    (re.compile(r"/[A-Za-z0-9_./-]*/site-packages/"), "<site-packages>/"),
)


#: a cell holding a process environment (``NAME=value NAME=value ...``) is dropped whole
_ENV = re.compile(r"(^|[\s\x00;])(PATH|HOME|LD_LIBRARY_PATH|PWD)=")


def redact(text: str) -> str:
    if _ENV.search(text):
        return "<environment removed>"
    for rx, rep in RULES:
        text = rx.sub(rep, text)
    return text


def redact_sqlite(path: Path) -> int:
    """Rewrite text cells that hold a host path; returns the number of cells changed."""
    con = sqlite3.connect(path)
    changed = 0
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')]
            for col in cols:
                # every text cell: environments are NUL-separated, where SQL's LIKE stops reading
                rows = con.execute(f'SELECT rowid, "{col}" FROM "{t}" WHERE typeof("{col}") = \'text\'').fetchall()
                for rowid, val in rows:
                    new = redact(val)
                    if new != val:
                        con.execute(f'UPDATE "{t}" SET "{col}" = ? WHERE rowid = ?', (new, rowid))
                        changed += 1
        if "META_DATA_CAPTURE" in tables:  # one row per environment variable, and the working directory
            cur = con.execute("UPDATE META_DATA_CAPTURE SET value = '<removed>' "
                              "WHERE name LIKE '%ENVIRONMENT_VARIABLE%' AND value != '<removed>'")
            changed += cur.rowcount
            cur = con.execute("UPDATE META_DATA_CAPTURE SET value = '.' "
                              "WHERE name LIKE '%WORKING_DIR%' AND value != '.'")
            changed += cur.rowcount
        con.commit()
        if changed:  # drop the old text from free pages too
            con.execute("VACUUM")
    finally:
        con.close()
    return changed


def main(paths: list[str]) -> int:
    for p in map(Path, paths):
        if p.suffix == ".sqlite":
            n = redact_sqlite(p)
        else:
            old = p.read_text(encoding="utf-8", errors="surrogateescape")
            new = redact(old)
            n = int(new != old)
            if n:
                p.write_text(new, encoding="utf-8", errors="surrogateescape")
        print(f"{p}: {n} change(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
