#!/usr/bin/env python3
"""Writers that validate the power-loss harness. Each prints one line per
acknowledged record to stdout ("ack ID"), flushed, only after the write is
as durable as that writer makes it.

    writers.py sqlite DB PREFIX THREADS   correct: WAL, synchronous=FULL
    writers.py append FILE PREFIX         wrong: appends, never syncs
    writers.py sfr FILE PREFIX            wrong: appends, sync_file_range only
                                          (what sled 0.34 does for its log)
"""

import ctypes
import hashlib
import os
import random
import sqlite3
import sys
import threading
import time

_print_lock = threading.Lock()


def ack(ident: str) -> None:
    with _print_lock:
        sys.stdout.write(f"ack {ident}\n")
        sys.stdout.flush()


def payload(ident: str) -> bytes:
    rnd = random.Random(ident)
    return rnd.randbytes(rnd.randint(10, 6000))


def sqlite_setup(db: str) -> None:
    """Create the schema; the caller fsyncs the directory afterwards (SQLite
    never syncs the directory of a new main database file)."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, body BLOB NOT NULL, sha TEXT NOT NULL)")
    con.commit()
    con.close()


def sqlite_writer(db: str, prefix: str, threads: int) -> None:
    def run(t: int) -> None:
        con = sqlite3.connect(db, timeout=60, isolation_level=None)
        con.execute("PRAGMA synchronous=FULL")
        n = 0
        while True:
            n += 1
            ident = f"{prefix}-{t}-{n}"
            body = payload(ident)
            batch = 1 + n % 3  # 1-3 rows per transaction
            ids = [f"{ident}.{i}" for i in range(batch)]
            con.execute("BEGIN IMMEDIATE")
            for i in ids:
                b = payload(i)
                con.execute("INSERT INTO t VALUES (?, ?, ?)", (i, b, hashlib.sha256(b).hexdigest()))
            con.execute("COMMIT")
            for i in ids:
                ack(i)
            del body

    ts = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def append_writer(path: str, prefix: str, sfr: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = 0
    while True:
        n += 1
        ident = f"{prefix}-{n}"
        os.write(fd, f"{ident} {'x' * 200}\n".encode())
        if sfr:
            # SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER over the whole file
            if libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), 7) != 0:
                raise OSError(ctypes.get_errno(), "sync_file_range")
        ack(ident)
        if n % 50 == 0:
            time.sleep(0.001)


def main() -> None:
    mode = sys.argv[1]
    if mode == "sqlite":
        sqlite_writer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "append":
        append_writer(sys.argv[2], sys.argv[3], sfr=False)
    elif mode == "sfr":
        append_writer(sys.argv[2], sys.argv[3], sfr=True)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
