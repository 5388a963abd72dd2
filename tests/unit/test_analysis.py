"""The stock analysis's rules without a bus: the lexicon on hand-checked sentences, news ids,
tagging and categories, the news file reader, trigger coalescing, the technical components, the
LLM answer parser, the aggregation at its thresholds, the settings and the message rules."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pipeline.analysis.aggregation import AlertState, Scored, combine, decide
from pipeline.analysis.llm import LlmAnswerError, PromptItem, build_messages, parse_answer
from pipeline.analysis.news import (
    NewsItem,
    RowError,
    SymbolTagger,
    categorize,
    is_breaking,
    items_from_file,
    merged_aliases,
    news_fields,
    news_id,
)
from pipeline.analysis.sentiment import LexiconScorer, ScoredItem
from pipeline.analysis.sentiment import combine as combine_sentiment
from pipeline.analysis.settings import AlertThresholds, analysis_from_env
from pipeline.analysis.technical import analyse, bollinger, macd
from pipeline.analysis.triggers import BarIn, Coalescer, NewsIn, Schedule
from pipeline.errors import BadMessageError, ConfigError
from pipeline.messages import build, decode, encode
from pipeline.messages.analysis import AnalysisResult, StockNews

# --------------------------------------------------------------------------- the lexicon


@pytest.fixture(scope="module")
def lexicon() -> LexiconScorer:
    return LexiconScorer()


@pytest.mark.parametrize(
    ("title", "sign"),
    [
        ("Apple beats earnings expectations, shares surge", 1),
        ("Nvidia upgraded to outperform on record data-center growth", 1),
        ("Tesla plunges after recall and SEC investigation", -1),
        ("Microsoft downgraded as cloud growth slows, shares tumble", -1),
        ("Bank files for bankruptcy protection", -1),
        ("Apple shares did not fall after the report", 1),  # VADER's negation turns "fall" around
        ("Alphabet to hold annual shareholder meeting on Tuesday", 0),
    ],
)
def test_the_lexicon_reads_hand_checked_headlines(lexicon: LexiconScorer, title: str, sign: int) -> None:
    score = lexicon.score(title)
    if sign == 0:
        assert abs(score.score) < 0.2
    else:
        assert np.sign(score.score) == sign and abs(score.score) >= 0.2, score
        assert score.confidence >= 0.5
    assert -1 <= score.score <= 1 and score.model.startswith("vader")


def test_a_neutral_lead_does_not_dilute_the_headline_and_vietnamese_is_left_to_the_llm(lexicon: LexiconScorer) -> None:
    alone = lexicon.score("Apple beats earnings expectations, shares surge")
    with_lead = lexicon.score("Apple beats earnings expectations, shares surge", "The company reported on Tuesday.")
    assert with_lead.score == alone.score
    vi = lexicon.score("VCB công bố kế hoạch tăng vốn điều lệ", "Ngân hàng Ngoại thương tăng trưởng mạnh.")
    assert (vi.score, vi.confidence, vi.language) == (0.0, 0.0, "vi") and "LLM_BASE_URL" in vi.note


def test_symbol_sentiment_weighs_recent_items_more_and_counts_a_negative_cluster(lexicon: LexiconScorer) -> None:
    hour = 3_600_000
    now = 1_800_000_000_000
    good_old = ScoredItem("a", "old good", now - 24 * hour, lexicon.score("Shares surge on record profit"))
    bad_new = ScoredItem("b", "new bad", now - hour, lexicon.score("Shares plunge after fraud probe"))
    mixed = combine_sentiment([good_old, bad_new], now)
    assert mixed.score < 0  # six-hour half-life: the day-old good news weighs 1/16 of the fresh bad news
    assert [i["news_id"] for i in mixed.details["items"]] == ["b", "a"]
    assert mixed.details["negative_recent"] == 1
    cluster = combine_sentiment(
        [
            ScoredItem(str(i), "bad", now - i * hour, lexicon.score("Shares tumble on lawsuit and layoffs"))
            for i in range(3)
        ],
        now,
    )
    assert cluster.details["negative_recent"] == 3 and cluster.confidence > 0.5
    assert combine_sentiment([], now).score == 0.0


# --------------------------------------------------------------------------- news


def test_news_id_is_stable_across_tracking_parameters_and_whitespace() -> None:
    a = news_id(source_url="https://News.example/a?id=1&utm_source=x#top", source="S", title="T", published_at="t")
    b = news_id(source_url="https://news.example/a?id=1", source="other", title="other", published_at="x")
    assert a == b and a.startswith("n-") and len(a) == 22
    c = news_id(source_url="", source="VnExpress", title="VCB  tăng vốn", published_at="2024-12-04T08:30:00+07:00")
    d = news_id(source_url="", source="vnexpress", title="vcb tăng vốn", published_at="2024-12-04T08:30:00+07:00")
    assert c == d != a


def test_the_tagger_finds_tickers_and_names_in_english_and_vietnamese() -> None:
    tagger = SymbolTagger(merged_aliases({"ACB": ("Á Châu",)}, ["AAPL"]))
    assert tagger.tag("Vietcombank công bố kế hoạch tăng vốn") == ["VCB"]
    assert tagger.tag("Ngan hang Ngoai thuong Viet Nam bao lai") == ["VCB"]  # without accents too
    assert tagger.tag("Ngân hàng Á Châu và Apple") == ["ACB", "AAPL"]
    assert tagger.tag("$MSFT and Google rally") == ["MSFT", "GOOGL"]
    assert tagger.tag("An apple a day; a pineapple") == []  # names are whole words, tickers upper case
    assert tagger.tag("Applesauce makers") == []


def test_categories_and_tags_follow_the_seed() -> None:
    assert categorize("VCB công bố kế hoạch tăng vốn điều lệ", "") == ("corporate_action", ["tăng vốn"])
    category, tags = categorize("Apple quarterly results beat", "revenue up, shares rise")
    assert category == "earnings" and "revenue" in tags and "shares" in tags
    assert categorize("Hello", "world") == ("general", [])
    assert is_breaking("BREAKING: trading halted in XYZ") and not is_breaking("Apple holds meeting")


def test_news_fields_make_one_message_per_symbol_and_none_for_an_untagged_item() -> None:
    tagger = SymbolTagger(merged_aliases({}))
    item = NewsItem("Apple and Microsoft surge", "", "wire", "https://x/1", "2026-12-04T08:30:00+00:00")
    fields = news_fields(item, tagger, "2026-12-04T09:00:00+00:00")
    assert [f["symbol"] for f in fields] == ["AAPL", "MSFT"] and len({f["news_id"] for f in fields}) == 1
    for f in fields:
        assert isinstance(build(StockNews, **f), StockNews)
    assert news_fields(NewsItem("Weather is fine", "", "w", "", "2026-12-04T08:30:00+00:00"), tagger, "x") == []


def test_the_news_file_reader_names_the_line_field_value_and_rule() -> None:
    csv_text = (
        "title,published_at,symbol,content\n"
        "VCB tăng vốn,2024-12-04T08:30:00+07:00,VCB,Nội dung\n"
        ",2024-12-04T08:30:00+07:00,VCB,no title\n"
        "No time,,AAPL,\n"
        "Bad symbol,1733300000,not a symbol!,\n"
    )
    found = list(items_from_file(csv_text, "news.csv"))
    assert isinstance(found[0], NewsItem) and found[0].symbols == ("VCB",)
    errors = [str(e) for e in found if isinstance(e, RowError)]
    assert errors[0].startswith("line 3: title=''") and "a title that is not blank" in errors[0]
    assert errors[1].startswith("line 4: published_at=None")
    assert "line 5: symbol=" in errors[2] and "a stock symbol" in errors[2]
    jsonl = '{"title": "Apple beats", "published_at": 1733300000000}\nnot json\n'
    items = list(items_from_file(jsonl, "news.jsonl"))
    assert isinstance(items[0], NewsItem) and items[0].published_at.startswith("2024-12-04T")
    assert isinstance(items[1], RowError) and "a JSON object" in str(items[1])
    assert "names the columns published_at" in str(next(iter(items_from_file("title\nx\n", "n.csv"))))


# --------------------------------------------------------------------------- triggers


def test_a_burst_of_1000_bars_is_one_price_trigger_with_the_latest_bars() -> None:
    c = Coalescer(big_move_pct=2.0)
    bars = [BarIn("AAPL", "1Min", i * 60_000, 100.0, 100.2, 99.9, 100.0 + i * 0.01, 10.0) for i in range(1000)]
    (trigger,) = c.coalesce(bars, [])
    assert trigger.trigger_type == "price_update" and trigger.metadata["data_count"] == 1000
    assert len(trigger.metadata["bars"]) == 60 and trigger.metadata["bars"][-1][0] == 999 * 60_000
    assert trigger.metadata["priority"] == "critical"  # +9.99 % from the first open: twice the big move


def test_priority_rises_for_big_moves_and_breaking_news() -> None:
    c = Coalescer(big_move_pct=2.0)
    first = c.coalesce([BarIn("X", "1Min", 0, 100, 100, 100, 100, 1)], [])
    assert first[0].metadata["priority"] == "normal"
    moved = c.coalesce([BarIn("X", "1Min", 60_000, 100, 102.5, 100, 102.5, 1)], [])
    assert moved[0].metadata["priority"] == "high" and moved[0].metadata["move_pct"] == pytest.approx(2.5)
    news = c.coalesce([], [NewsIn("X", "n-1", "Breaking: X halted"), NewsIn("X", "n-2", "X holds meeting")])
    assert [(t.trigger_type, t.metadata["priority"], t.metadata["data_count"]) for t in news] == [
        ("news_update", "high", 2)
    ]


def test_the_schedule_is_cron_in_new_york_time() -> None:
    friday_8am_ny = 1_796_389_200.0  # 2026-12-04 08:00 America/New_York
    assert Schedule("*/15 9-16 * * mon-fri").next_after(friday_8am_ny) == friday_8am_ny + 3600
    with pytest.raises(ValueError, match="not a cron"):
        Schedule("every minute")


# --------------------------------------------------------------------------- technical


def bars_of(closes: np.ndarray, volumes: np.ndarray | None = None) -> pd.DataFrame:
    n = len(closes)
    opens = np.r_[closes[0], closes[:-1]]
    return pd.DataFrame(
        {
            "start": np.arange(n) * 60_000,
            "open": opens,
            "high": np.maximum(opens, closes) * 1.001,
            "low": np.minimum(opens, closes) * 0.999,
            "close": closes,
            "volume": np.ones(n) * 100 if volumes is None else volumes,
        }
    )


def test_technical_components_follow_their_definitions() -> None:
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 80)))
    volumes = np.ones(80) * 100
    volumes[-1] = 600  # a 6x spike on the last bar
    result = analyse(bars_of(closes, volumes))
    assert result is not None
    comps = result.details["components"]
    assert set(comps) == {"ma_cross", "rsi", "macd", "bollinger", "volume"}
    line, signal, hist = macd(closes)
    assert comps["macd"]["histogram"] == pytest.approx(hist) and hist == pytest.approx(line - signal)
    lower, mid, upper = bollinger(closes)
    assert mid - lower == pytest.approx(upper - mid)
    assert mid == pytest.approx(closes[-20:].mean()) and upper - mid == pytest.approx(2 * closes[-20:].std())
    assert comps["volume"]["spike"] and comps["volume"]["ratio"] == pytest.approx(6.0)
    assert comps["volume"]["score"] == pytest.approx(np.sign(closes[-1] - closes[-2]))
    total = sum(c["weight"] for c in comps.values())
    assert result.score == pytest.approx(sum(c["weight"] * c["score"] for c in comps.values()) / total)
    assert -1 <= result.score <= 1 and 0 <= result.confidence <= 1


def test_a_steady_fall_reads_bearish_on_trend_and_too_little_history_gives_nothing() -> None:
    falling = analyse(bars_of(100 * 0.997 ** np.arange(60) * (1 + 0.0005 * np.sin(np.arange(60)))))
    assert falling is not None
    assert falling.details["components"]["ma_cross"]["score"] < -0.5
    macd_part = falling.details["components"]["macd"]
    assert macd_part["macd"] < 0 and np.sign(macd_part["score"]) == np.sign(macd_part["histogram"])
    assert falling.details["move_pct"] < -3
    assert analyse(bars_of(np.linspace(100, 101, 26))) is None


# --------------------------------------------------------------------------- the LLM's answer


def test_the_llm_answer_parser_accepts_the_asked_json_only() -> None:
    asked = ["n-1", "n-2"]
    fenced = '```json\n{"items": [{"id": "n-1", "score": -0.5, "confidence": 0.8, "reason": "weak"}]}\n```'
    (item,) = parse_answer(fenced, None, asked)
    assert (item.news_id, item.score, item.confidence, item.reason) == ("n-1", -0.5, 0.8, "weak")
    cases = [
        (None, "I can't help with that.", "refused"),
        ("Sure! Here you go: {bad", None, "not JSON"),
        ('{"scores": []}', None, 'no "items"'),
        ('{"items": [{"id": "n-9", "score": 0, "confidence": 1}]}', None, "not asked about"),
        ('{"items": [{"id": "n-1", "score": 1.5, "confidence": 1}]}', None, "outside [-1, 1]"),
        ('{"items": [{"id": "n-1", "score": "high", "confidence": 1}]}', None, "not a number"),
        ("", None, "empty"),
    ]
    for content, refusal, reason in cases:
        with pytest.raises(LlmAnswerError, match=re.escape(reason)):
            parse_answer(content, refusal, asked)


def test_the_prompt_names_the_stock_its_aliases_and_the_items() -> None:
    items = [PromptItem("n-1", "VCB tăng vốn", "x" * 2000, "2024-12-04T08:30:00+07:00")]
    system, user = build_messages("VCB", ["Vietcombank"], items)
    assert system["role"] == "system" and '"items"' in system["content"]
    assert "VCB (also called Vietcombank)" in user["content"] and "VCB tăng vốn" in user["content"]
    assert "x" * 601 not in user["content"]


# --------------------------------------------------------------------------- aggregation at its thresholds

T = AlertThresholds(enter=0.5, exit=0.2, agree=0.3, risk_move_pct=3.0, news_cluster=3)


def tech(score: float, move: float = 0.0, conf: float = 1.0) -> Scored:
    return Scored(score, conf, {"last_close": 100.0, "volatility_25": 0.01, "move_pct": move})


def sent(score: float, negatives: int = 0, conf: float = 1.0) -> Scored:
    return Scored(score, conf, {"negative_recent": negatives})


def step(state: AlertState, t: Scored | None, s: Scored | None) -> tuple[AlertState, list[str]]:
    agg = combine(t, s, T)
    assert agg is not None
    new, alerts = decide("VCB", state, agg, t, s, T)
    return new, [f"{a.alert_type}:{a.priority}" for a in alerts]


def test_a_buy_signal_needs_both_to_agree_at_the_thresholds() -> None:
    hold = AlertState()
    assert step(hold, tech(0.5), sent(0.5)) == (AlertState("BUY"), ["buy_signal:low"])
    assert step(hold, tech(0.49), sent(0.49))[1] == []  # final 0.49 < enter
    assert step(hold, tech(0.9), sent(0.29))[1] == []  # final 0.595, but sentiment under agree
    assert step(hold, tech(0.9), None)[1] == []  # no sentiment: no signal
    assert step(hold, tech(0.8), sent(0.8))[1] == ["buy_signal:high"]
    assert step(hold, tech(0.7), sent(0.6))[1] == ["buy_signal:medium"]
    assert step(hold, tech(-0.6), sent(-0.7))[1] == ["sell_signal:medium"]  # final -0.65
    assert step(hold, tech(-0.6), sent(-0.6))[1] == ["sell_signal:low"]


def test_hysteresis_alerts_once_until_the_score_falls_under_exit() -> None:
    state, alerts = step(AlertState(), tech(0.6), sent(0.6))
    assert alerts == ["buy_signal:low"]
    for score in (0.45, 0.55, 0.21, 0.6):  # wobbling above exit: still BUY, no new alert
        state, alerts = step(state, tech(score), sent(score))
        assert (state.signal, alerts) == ("BUY", [])
    state, alerts = step(state, tech(0.19), sent(0.19))
    assert (state.signal, alerts) == ("HOLD", [])
    state, alerts = step(state, tech(0.6), sent(0.6))
    assert alerts == ["buy_signal:low"]  # a new entry after leaving
    state, alerts = step(state, tech(-0.9), sent(-0.9))
    assert (state.signal, alerts) == ("SELL", ["sell_signal:high"])


def test_risk_alerts_on_an_adverse_move_or_a_news_cluster_once_while_it_lasts() -> None:
    state, alerts = step(AlertState(), tech(0.0, move=-2.99), sent(0.0, negatives=2))
    assert alerts == []
    state, alerts = step(state, tech(0.0, move=-3.0), sent(0.0))
    assert alerts == ["risk_alert:high"] and state.risk
    state, alerts = step(state, tech(0.0, move=-4.0), sent(0.0))
    assert alerts == []  # still on
    state, alerts = step(state, tech(0.0, move=0.0), sent(0.0))
    assert not state.risk and alerts == []
    assert step(state, tech(0.0), sent(-0.1, negatives=3))[1] == ["risk_alert:high"]
    assert step(state, tech(0.0, move=-3.5), sent(0.0, negatives=3))[1] == ["risk_alert:critical"]
    assert step(state, tech(0.0, move=-6.0), sent(0.0))[1] == ["risk_alert:critical"]


def test_the_aggregate_weighs_by_confidence_and_targets_a_scaled_move() -> None:
    agg = combine(tech(0.8, conf=0.9), sent(-0.2, conf=0.3), T)
    assert agg is not None
    assert agg.final_score == pytest.approx((0.8 * 0.9 - 0.2 * 0.3) / 1.2, abs=1e-4)
    assert agg.target_price == pytest.approx(100 * np.exp(agg.final_score * 2 * 0.01 * np.sqrt(15)), rel=1e-4)
    assert combine(None, None, T) is None
    only_news = combine(None, sent(-0.7), T)
    assert only_news is not None and only_news.recommendation == "SELL" and only_news.target_price is None


# --------------------------------------------------------------------------- settings and message rules


def test_settings_are_checked_once() -> None:
    s = analysis_from_env({"NEWS_SYMBOL_ALIASES": "VCB=Vietcombank|Ngoại thương;acb=Á Châu"})
    assert s.aliases == {"VCB": ("Vietcombank", "Ngoại thương"), "ACB": ("Á Châu",)}
    assert analysis_from_env({"ANALYSIS_SCHEDULE": "off"}).schedule is None
    bad = [
        ({"ANALYSIS_SCHEDULE": "often"}, "ANALYSIS_SCHEDULE"),
        ({"ALERT_ENTER_SCORE": "0.2", "ALERT_EXIT_SCORE": "0.3"}, "hysteresis"),
        ({"LLM_BASE_URL": "http://127.0.0.1:1/v1"}, "go together"),
        ({"NEWS_FEEDS": "ftp://x/feed"}, "NEWS_FEEDS"),
        ({"NEWS_SYMBOL_ALIASES": "VCB"}, "NEWS_SYMBOL_ALIASES"),
    ]
    for env, word in bad:
        with pytest.raises(ConfigError, match=word):
            analysis_from_env(env)


def test_a_result_outside_minus_one_to_one_and_news_without_title_or_time_break_rules() -> None:
    result = {
        "result_id": "r",
        "symbol": "VCB",
        "analysis_type": "technical",
        "timestamp": "2024-12-04T10:00:00+07:00",
        "results": {"score": 1.2, "confidence": 0.5, "details": {}},
    }
    with pytest.raises(BadMessageError, match=r"results.score=1.2 breaks rule: results.score <= 1.0"):
        build(AnalysisResult, **result)
    news = {
        "news_id": "n-1",
        "symbol": "VCB",
        "title": "  ",
        "content": "",
        "source": "s",
        "source_url": "",
        "published_at": "yesterday",
        "collected_at": "2024-12-04T09:00:00+07:00",
        "category": "general",
    }
    with pytest.raises(BadMessageError) as caught:
        build(StockNews, **news)
    assert {v.field for v in caught.value.violations} == {"title", "published_at"}
    good = build(StockNews, **{**news, "title": "VCB", "published_at": "2024-12-04T08:30:00+07:00"})
    assert decode("stock_news_raw", encode(good)) == good
