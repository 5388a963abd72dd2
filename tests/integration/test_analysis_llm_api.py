"""The LLM path against a local server speaking the OpenAI chat-completions API (an answer, a slow
one, a refusal, malformed JSON, a server error), each degrading to the lexicon with a visible note
and never stalling; the news import and analysis commands; the two API routes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.__main__ import main
from pipeline.analysis.llm_client import LlmScorer
from pipeline.api.app import create_app
from pipeline.config import load_config
from pipeline.messages import AnalysisTrigger, ms_iso
from pipeline.stages.sentiment_analysis import SentimentAnalysis
from pipeline.wiring import build_runtime
from storage import analysis
from storage.db import Database
from tests.fakes.llm_server import FakeLlm

pytestmark = pytest.mark.timeout(180)
KEY = "sk-test-SECRET-0123456789"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "desk.db")
    now = int(time.time() * 1000)
    rows: list[analysis.NewsRow] = [
        (
            "n-1",
            "VCB",
            "VCB công bố kế hoạch tăng vốn điều lệ",
            "",
            "VnExpress",
            "",
            ms_iso(now),
            now,
            ms_iso(now),
            "corporate_action",
            [],
        ),
        (
            "n-2",
            "VCB",
            "Vietcombank profit surges",
            "",
            "wire",
            "",
            ms_iso(now - 60_000),
            now - 60_000,
            ms_iso(now),
            "earnings",
            [],
        ),
    ]
    database.write(lambda d: analysis.store_news(d.conn, rows))
    yield database
    database.close()


def trigger() -> AnalysisTrigger:
    return AnalysisTrigger(
        trigger_id="t-1", symbol="VCB", trigger_type="news_update", timestamp=ms_iso(int(time.time() * 1000))
    )


def run(stage: SentimentAnalysis):
    (result,) = stage.process_batch([(trigger(), False)])
    return result


def test_the_llm_scores_every_item_including_vietnamese(db: Database) -> None:
    with FakeLlm("ok", score=-0.8) as server:
        llm = LlmScorer(server.base_url, "test-model", KEY, timeout_s=5)
        result = run(SentimentAnalysis(db, llm=llm, aliases={"VCB": ("Vietcombank",)}))
        assert server.authorizations == [f"Bearer {KEY}"]
        request = server.requests[0]
        assert request["model"] == "test-model" and request["response_format"] == {"type": "json_object"}
        assert "VCB (also called Vietcombank)" in request["messages"][1]["content"]
    assert result.metadata["llm"] == "used" and result.metadata["model_version"] == "llm:test-model"
    assert result.results.score == pytest.approx(-0.8) and "notes" not in result.results.details
    items = {i["news_id"]: i for i in analysis.news(db, "VCB")}
    assert items["n-1"]["sentiment"] == -0.8 and items["n-1"]["sentiment_model"] == "llm:test-model"
    assert items["n-1"]["sentiment_detail"]["reason"] == "fake reading"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("slow", "no answer within 0.5 s"),
        ("refusal", "the model refused"),
        ("malformed", "the answer is not JSON"),
        ("http500", "HTTP 500"),
    ],
)
def test_a_failing_llm_degrades_to_the_lexicon_with_a_note_and_rests(
    db: Database, mode: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeLlm(mode, delay_s=3.0) as server:
        llm = LlmScorer(server.base_url, "test-model", KEY, timeout_s=0.5, cooldown_s=60)
        stage = SentimentAnalysis(db, llm=llm)
        began = time.monotonic()
        with caplog.at_level(logging.WARNING):
            first = run(stage)
        assert time.monotonic() - began < 2.5  # the timeout, not the slow answer
        second = run(stage)  # resting: not asked again
        assert len(server.requests) == 1
    for result in (first, second):
        assert result.metadata["llm"] == "fallback" and result.metadata["model_version"].startswith("vader")
        notes = result.results.details["notes"]
        assert any(reason in n and "lexicon scores" in n for n in notes), notes
    assert "resting" in " ".join(second.results.details["notes"])
    items = {i["news_id"]: i for i in analysis.news(db, "VCB")}
    assert items["n-2"]["sentiment"] > 0.2  # the lexicon's reading stands
    assert items["n-1"]["sentiment_detail"]["language"] == "vi"  # the lexicon cannot read it
    assert KEY not in caplog.text and all(KEY not in n for n in first.results.details["notes"])
    assert stage.status()["llm_fallbacks"] == 2


def test_news_import_then_the_analysis_command_and_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    monkeypatch.chdir(tmp_path)
    now = int(time.time() * 1000)
    file = tmp_path / "news.csv"
    file.write_text(
        "title,published_at,symbol,source\n"
        f"Apple beats earnings expectations,{ms_iso(now)},AAPL,wire\n"
        f",{ms_iso(now)},AAPL,wire\n"
        f"Microsoft shares surge on Azure growth,{ms_iso(now - 60_000)},,wire\n",
        encoding="utf-8",
    )
    runtime = build_runtime(
        load_config(
            {
                "DATA_DIR": str(tmp_path),
                "STAGES": "analysis-triggers,sentiment-analysis,aggregation",
                "ANALYSIS_DEBOUNCE_MS": "50",
            }
        )
    )
    try:
        assert main(["news", "import", str(file)]) == 1  # one row refused
        out = capsys.readouterr()
        assert "2 item(s) read, 2 message(s) published" in out.out
        assert "refused: line 3: title=''" in out.err
        deadline = time.monotonic() + 30
        while not analysis.latest_results(runtime.db, "MSFT"):
            assert time.monotonic() < deadline, "no sentiment result for MSFT"
            time.sleep(0.1)
        assert main(["news", "import", str(file), "--json"]) == 1
        again = json.loads(capsys.readouterr().out)
        assert again["published"] == 0 and again["seen before"] == 2  # a re-import publishes nothing
        assert [n["title"] for n in analysis.news(runtime.db, "AAPL")] == ["Apple beats earnings expectations"]
        ctx = runtime.api_context()
        auth = {"Authorization": f"Bearer {ctx.tokens.token_for(ctx.user_id)}"}
        api = TestClient(create_app(ctx), base_url="http://127.0.0.1", headers=auth)
        body = api.get("/api/analysis/msft").json()
        assert body["symbol"] == "MSFT" and body["sentiment"]["score"] > 0 and body["technical"] is None
        assert body["aggregate"]["recommendation"] in ("BUY", "HOLD")
        bad = api.get("/api/analysis/not a symbol!")
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "symbol"
        assert api.get("/api/stock-alerts", params={"limit": 0}).status_code == 422
        assert api.get("/api/stock-alerts").json() == {"alerts": []}
    finally:
        runtime.stop()
    assert main(["analysis", "--symbol", "MSFT"]) == 0
    text = capsys.readouterr().out
    assert "sentiment  score +" in text and "Microsoft shares surge" in text and "aggregate" in text
    assert main(["analysis", "--symbol", "MSFT", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sentiment"]["analysis_type"] == "sentiment"
