"""Commands of the stock analysis: ``news import FILE`` and ``analysis --symbol S [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.common import config_from_env, figure
from pipeline.errors import PipelineError


def cmd_news_import(args: argparse.Namespace) -> int:
    """Publish a news file (CSV or JSON lines) to stock_news_raw; refused rows are listed and dead-lettered."""
    from pipeline.analysis.news import SymbolTagger, merged_aliases
    from pipeline.bus import create_bus
    from pipeline.sources.news import NewsPublisher, import_news_file
    from pipeline.topics import CATALOG
    from storage import analysis
    from storage.db import open_database

    path = Path(args.file)
    if not path.is_file():
        raise PipelineError(f"{path}: no such file")
    config = config_from_env()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config)
    bus = create_bus(config)
    try:
        bus.create_topics(CATALOG.values())
        tagger = SymbolTagger(merged_aliases(config.analysis.aliases, config.stock_symbols))
        publisher = NewsPublisher(
            bus.producer(), tagger, lambda ids: analysis.known_news_ids(db.reader().conn, ids), stage="news-import"
        )
        report = import_news_file(path, publisher)
        publisher.producer.close()
    finally:
        bus.close()
        db.close()
    if args.json:
        print(
            json.dumps({"items": report.items, "published": report.published, **report.counts, "errors": report.errors})
        )
    else:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts.items()))
        print(
            f"{path.name}: {report.items} item(s) read, {report.published} message(s) published ({counts or 'nothing'})"
        )
        for error in report.errors:
            print(f"refused: {error}", file=sys.stderr)
    return 1 if report.errors else 0


def _result_line(kind: str, result: dict[str, Any] | None) -> str:
    if result is None:
        return f"{kind:<10} -"
    meta = result["metadata"]
    return (
        f"{kind:<10} score {result['score']:+.3f}  confidence {result['confidence']:.2f}  at {result['time']}  "
        f"({meta.get('model_version', '?')}, {figure(meta.get('processing_time'))} s)"
    )


def cmd_analysis(args: argparse.Namespace) -> int:
    """Print a symbol's latest technical and sentiment results, their aggregate and its alerts."""
    from pipeline.api.analysis import symbol_analysis
    from storage.db import open_database

    config = config_from_env()
    path = config.data_dir / "desk.db"
    if not config.database_url and not path.exists():
        raise PipelineError(f"no store at {path}: run the desk first (make run)")
    db = open_database(config)
    try:
        found = symbol_analysis(db, args.symbol.strip().upper())
    finally:
        db.close()
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return 0
    print(f"{found['symbol']}")
    print(_result_line("technical", found["technical"]))
    if found["technical"]:
        for name, c in found["technical"]["details"].get("components", {}).items():
            print(f"    {name:<24} {c['score']:+.3f}  (weight {c['weight']:.2f})")
    print(_result_line("sentiment", found["sentiment"]))
    if found["sentiment"]:
        for item in found["sentiment"]["details"].get("items", [])[:10]:
            print(f"    {item['score']:+.3f}  {item['title'][:90]}")
        for note in found["sentiment"]["details"].get("notes", []):
            print(f"    note: {note}")
    agg = found["aggregate"]
    if agg is None:
        print("aggregate  - (no result yet)")
    else:
        target = f", target {agg['target_price']:g}" if agg["target_price"] else ""
        print(f"aggregate  {agg['final_score']:+.3f} {agg['recommendation']}{target} at {agg['time']}")
    for alert in found["alerts"]:
        print(f"alert      {alert['time']} {alert['priority']:<8} {alert['alert_type']:<12} {alert['message']}")
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    news = sub.add_parser("news", help="news for the stock analysis")
    news_sub = news.add_subparsers(dest="news_command", required=True)
    p = news_sub.add_parser("import", help="publish a CSV or JSON-lines news file to stock_news_raw")
    p.add_argument("file", help="CSV (title,published_at[,content,source,source_url,symbol,category,tags]) or .jsonl")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(fn=cmd_news_import)
    p = sub.add_parser("analysis", help="a stock's latest analysis results, their aggregate and its alerts")
    p.add_argument("--symbol", required=True, help="a stock symbol, e.g. AAPL or VCB")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(fn=cmd_analysis)
