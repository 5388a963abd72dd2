"""The Analysis page through AppTest, on a store holding one stock's analysis: the metrics, the price
chart with the alert marked, the score over time, the technical components, the news with their
sentiment, the LLM's fallback note and the alert feed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.ui.seed_analysis import seed_analysis  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def test_the_analysis_page_shows_one_stocks_analysis(
    built_runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGES", "")
    monkeypatch.setenv("SUBSCRIBED_SYMBOLS", "AAPL,MSFT")
    seed_analysis(str(tmp_path / "desk.db"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    at.switch_page("views/analysis.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.value for t in at.title] == ["Analysis"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Final score"] == "+0.40" and metrics["Recommendation"] == "HOLD"
    assert metrics["Technical"] == "+0.35" and metrics["Sentiment"] == "+0.30"
    price, score = (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
    assert [t["type"] for t in price["data"]] == ["candlestick", "scatter"]
    assert price["data"][1]["name"] == "buy_signal" and "strong bullish" in price["data"][1]["text"][0]
    assert [t["name"] for t in score["data"]] == ["final score", "technical", "sentiment"]
    components, news, alerts = (d.value for d in at.dataframe)
    assert list(components["component"]) == ["ma_cross", "rsi"]
    assert list(news["sentiment"]) == [0.62, -0.41] and news["title"][0] == "Apple beats earnings expectations"
    assert list(alerts["type"]) == ["buy_signal"] and list(alerts["priority"]) == ["high"]
    assert any("LLM not used" in w.value for w in at.warning)
    at.selectbox(key="analysis_symbol").set_value("MSFT").run()
    assert not at.exception
    assert "No bars for MSFT yet." in [i.value for i in at.info]
