"""A large Binance spot trade-history CSV through the importer: time, memory, progress.

    python -m bench.importer --rows 1000000 [--backend embedded|kafka] [--stored [--processes]] [--xlsx]

Builds the file in memory (four pairs, alternating sides, fees in the base asset), then runs
``import_file`` as the Import page does: every row parsed, validated, fingerprinted, checked
against the journal and published to raw-trades. Prints one JSON line with the file size, the
seconds, rows per second, the number of progress updates and the process's peak RSS (which
includes the file itself). With ``--xlsx`` the same rows are an Excel workbook (built with openpyxl
before the clock starts; the timed part reads it with python-calamine, as the Import page does, and
imports it). With ``--stored`` the journal stages run too (threads of this process,
or with ``--processes`` one process each) and the line adds the seconds until every fill is in the
ledger and every stage has caught up, the journal's rows, and the stage processes' peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path

from bench.bus import make_bus
from bench.journal import InProcess, Processes, wait_until_joined
from pipeline.journal.importer import import_file
from pipeline.topics import CATALOG
from storage.db import Database

PAIRS = (("SOL", "USDT", 110.0), ("BTC", "USDT", 68000.0), ("ETH", "USDT", 3100.0), ("BNB", "USDT", 600.0))


def binance_csv(rows: int, seed: int = 7) -> bytes:
    """Return a Binance spot export of ``rows`` fills, with a BOM, as the exchange writes it."""
    rnd = random.Random(seed)
    out = io.StringIO()
    out.write("\ufeffDate(UTC),Pair,Side,Price,Executed,Amount,Fee\n")
    t0 = 1_600_000_000
    for i in range(rows):
        base, quote, mid = PAIRS[i % len(PAIRS)]
        price = round(mid * (1 + rnd.uniform(-0.2, 0.2)), 2)
        qty = round(rnd.uniform(0.001, 5), 6)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0 + i * 13))
        side = "BUY" if (i // len(PAIRS)) % 2 == 0 else "SELL"
        out.write(
            f"{stamp},{base}{quote},{side},{price},{qty:.10f}{base},{price * qty:.4f}{quote},{qty * 0.001:.8f}{base}\n"
        )
    return out.getvalue().encode()


def binance_xlsx(rows: int, seed: int = 7) -> bytes:
    """Return the same export as ``binance_csv`` as an .xlsx workbook, prices as numbers."""
    from openpyxl import Workbook  # a test dependency: only this benchmark writes workbooks

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    lines = binance_csv(rows, seed).decode().lstrip("\ufeff").splitlines()
    sheet.append(lines[0].split(","))
    for line in lines[1:]:
        cells: list[object] = list(line.split(","))
        cells[3] = float(cells[3])  # type: ignore[arg-type]
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--stored", action="store_true", help="also run the journal stages until all is stored")
    parser.add_argument("--processes", action="store_true", help="with --stored: each stage in a process of its own")
    parser.add_argument("--xlsx", action="store_true", help="the export as an Excel workbook instead of a CSV")
    args = parser.parse_args()
    data = binance_xlsx(args.rows) if args.xlsx else binance_csv(args.rows)
    with tempfile.TemporaryDirectory() as folder:
        suffix = uuid.uuid4().hex[:8]
        bus = make_bus(args.backend, folder, shared=args.processes, run=suffix)
        bus.create_topics(CATALOG.values())
        db = Database(Path(folder) / "desk.db")
        user = f"bench-{suffix}"
        stages: InProcess | Processes | None = None
        if args.stored:
            stages = (
                Processes(args.backend, Path(folder), str(db.path), suffix)
                if args.processes
                else InProcess(bus, db, suffix)
            )
            wait_until_joined(bus, stages.groups)
        updates: list[float] = []
        producer = bus.producer()
        start = time.perf_counter()
        report = import_file(
            data, user_id=user, producer=producer, db=db, progress=lambda done, total: updates.append(done / total)
        )
        seconds = time.perf_counter() - start
        result = {
            "backend": args.backend,
            "file": "xlsx" if args.xlsx else "csv",
            "rows": args.rows,
            "mb": round(len(data) / 2**20, 1),
            "accepted": report.accepted,
            "rejected": len(report.rejected),
            "import_seconds": round(seconds, 2),
            "rows_per_s": round(args.rows / seconds),
            "progress_updates": len(updates),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        }
        if stages is not None:
            expected = report.accepted
            while True:
                done = db.query("SELECT count(*) AS n FROM journal_fills WHERE user_id=?", (user,))[0]["n"]
                groups = [g for g in bus.describe_groups() if g.group_id in stages.groups]
                if done >= expected and len(groups) == len(stages.groups) and all(g.lag == 0 for g in groups):
                    break
                time.sleep(0.5)
            result["stored_seconds"] = round(time.perf_counter() - start, 2)
            result["journal_rows"] = db.query("SELECT count(*) AS n FROM journal_trades WHERE user_id=?", (user,))[0][
                "n"
            ]
            result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            stages.stop()
            if args.processes:
                result["stage_process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        producer.close()
        db.close()
        bus.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
