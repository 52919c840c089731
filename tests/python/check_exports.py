"""Reads vellum exports with readers that never link vellum, and checks them.

Usage: check_exports.py EXPECTED_DIR

EXPECTED_DIR holds one JSON file per export, written by tests/export_readers.rs:
{"export_dir": ..., "format": "jsonl"|"parquet"|"delta", "commit_version": N,
 "bank_total": N, "tables": {name: [[key_hex, value_hex, version], ...]}}

Each export is read with the readers of its format — Python's json (JSON Lines), pyarrow and
DuckDB (Parquet), deltalake and, where its extension loads offline, DuckDB's delta_scan
(Delta) — and every reader's rows must equal what vellum returned at the manifest's commit
version; the bank invariant (sum of the u64 little-endian balances of `accounts`) must hold.
Exits non-zero on the first mismatch.
"""

import base64
import glob
import json
import os
import sys
import zlib

import duckdb
import pyarrow.parquet as pq
from deltalake import DeltaTable

try:
    import duckdb_extension_delta

    DELTA_EXTENSION = glob.glob(
        os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension")
    )
except ImportError:
    DELTA_EXTENSION = []


def crc32c(data):
    # CRC-32C (Castagnoli), bitwise; the exports are small.
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def decode(text, encoding):
    return text.encode("utf-8") if encoding == "utf8" else base64.b64decode(text)


def rows_jsonl(path):
    rows = []
    with open(path, "rb") as f:
        for line in f:
            obj = json.loads(line)
            rows.append((decode(obj["key"], obj["key_encoding"]), decode(obj["value"], obj["value_encoding"]), obj["version"]))
    return rows


def rows_arrow(table):
    d = table.to_pydict()
    return [(bytes(k), bytes(v), int(n)) for k, v, n in zip(d["key"], d["value"], d["version"])]


def rows_duckdb(con, sql, arg):
    return [(bytes(k), bytes(v), int(n)) for k, v, n in con.execute(sql, [arg]).fetchall()]


def check_files(export_dir, table):
    for f in table["files"]:
        path = os.path.normpath(os.path.join(export_dir, f["path"]))
        data = open(path, "rb").read()
        assert len(data) == f["bytes"], f"{path}: {len(data)} bytes, manifest says {f['bytes']}"
        assert "%08x" % crc32c(data) == f["crc32c"], f"{path}: checksum differs from the manifest"


def delta_con():
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    for ext in DELTA_EXTENSION:
        try:
            con.execute(f"LOAD '{ext}'")
            return con
        except Exception as e:  # the extension may not load on this platform: say so, go on
            print(f"note: DuckDB delta extension did not load offline ({e}); deltalake still checks Delta")
    return None


def check(expected):
    export_dir = expected["export_dir"]
    manifest = json.load(open(os.path.join(export_dir, "manifest.json")))
    assert manifest["commit_version"] == expected["commit_version"], "manifest version differs"
    assert manifest["format"] == expected["format"]
    fmt = manifest["format"]
    readers = []
    con = duckdb.connect()
    dcon = delta_con() if fmt == "delta" else None
    names = sorted(t["name"] for t in manifest["tables"])
    assert names == sorted(expected["tables"]), f"tables differ: {names}"
    balances = None
    for table in manifest["tables"]:
        want = sorted((bytes.fromhex(k), bytes.fromhex(v), n) for k, v, n in expected["tables"][table["name"]])
        assert table["rows"] == len(want), f"{table['name']}: manifest rows {table['rows']} != {len(want)}"
        check_files(export_dir, table)
        got = {}
        if fmt == "jsonl":
            got["json"] = rows_jsonl(os.path.join(export_dir, table["files"][0]["path"]))
        elif fmt == "parquet":
            path = os.path.join(export_dir, table["files"][0]["path"])
            got["pyarrow"] = rows_arrow(pq.read_table(path))
            got["duckdb"] = rows_duckdb(con, "SELECT key, value, version FROM read_parquet(?)", path)
        elif fmt == "delta":
            table_dir = os.path.normpath(os.path.join(export_dir, table["delta_table"]))
            dt = DeltaTable(table_dir, version=table["delta_version"])
            got["deltalake"] = rows_arrow(dt.to_pyarrow_table())
            if dcon is not None:
                got["duckdb-delta"] = rows_duckdb(dcon, "SELECT key, value, version FROM delta_scan(?)", table_dir) if dt.version() == DeltaTable(table_dir).version() else None
                if got["duckdb-delta"] is None:
                    del got["duckdb-delta"]  # delta_scan reads the newest version only
        else:
            raise AssertionError(f"unknown format {fmt}")
        for reader, rows in got.items():
            assert sorted(rows) == want, f"{fmt}/{table['name']}: {reader} read {len(rows)} rows that differ from vellum's {len(want)}"
            readers.append(reader)
        if table["name"] == "accounts":
            balances = sum(int.from_bytes(v, "little") for _, v, _ in want)
    assert balances == expected["bank_total"], f"bank invariant broken: {balances} != {expected['bank_total']}"
    return sorted(set(readers))


def main():
    files = sorted(glob.glob(os.path.join(sys.argv[1], "*.json")))
    assert files, "no expectations found"
    for path in files:
        expected = json.load(open(path))
        readers = check(expected)
        print(f"ok {expected['format']} export at version {expected['commit_version']}: {', '.join(readers)}")
    print(f"{len(files)} passed, 0 failed")


if __name__ == "__main__":
    main()
