"""The stock analysis's workers (seed 003): the news collector, the scheduler, the triggers, the
technical and sentiment analyses and the aggregation."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.runner import StageRunner, Worker
from pipeline.wiring.runtime import Runtime, WorkerFactory


def _aliases(rt: Runtime) -> dict[str, tuple[str, ...]]:
    from pipeline.analysis.news import merged_aliases

    return merged_aliases(rt.config.analysis.aliases, rt.config.stock_symbols)


def _news_collector(rt: Runtime) -> Worker:
    from pipeline.analysis.news import SymbolTagger
    from pipeline.sources.news import NewsCollector
    from storage import analysis

    settings = rt.config.analysis
    if not settings.news_feeds:
        raise ConfigError("news-collector needs NEWS_FEEDS, e.g. https://example.org/markets.rss")
    db = rt.db
    return NewsCollector(
        rt.bus.producer(),
        SymbolTagger(_aliases(rt)),
        lambda ids: analysis.known_news_ids(db.reader().conn, ids),
        settings.news_feeds,
        poll_s=settings.news_poll_s,
    )


def _analysis_scheduler(rt: Runtime) -> Worker:
    from pipeline.analysis.triggers import Schedule
    from pipeline.sources.analysis_scheduler import AnalysisScheduler

    schedule = rt.config.analysis.schedule
    if not schedule:
        raise ConfigError("analysis-scheduler needs ANALYSIS_SCHEDULE, e.g. '*/15 9-16 * * mon-fri'")
    symbols = tuple(dict.fromkeys((*rt.config.stock_symbols, *rt.config.analysis.aliases)))
    return AnalysisScheduler(rt.bus.producer(), symbols, Schedule(schedule))


def _analysis_triggers(rt: Runtime) -> Worker:
    from pipeline.stages.analysis_triggers import AnalysisTriggers

    settings = rt.config.analysis
    stage = AnalysisTriggers(rt.db, big_move_pct=settings.big_move_pct)
    return StageRunner(stage, rt.bus, max_batch=5000, fill_wait_s=settings.debounce_ms / 1000)


def _technical_analysis(rt: Runtime) -> Worker:
    from pipeline.stages.technical_analysis import TechnicalAnalysis

    return StageRunner(TechnicalAnalysis(rt.db, rt.registry), rt.bus, max_batch=500)


def _sentiment_analysis(rt: Runtime) -> Worker:
    from pipeline.stages.sentiment_analysis import SentimentAnalysis

    settings = rt.config.analysis
    llm = None
    if settings.llm_enabled:
        from pipeline.analysis.llm_client import LlmScorer

        assert settings.llm_base_url is not None and settings.llm_model is not None
        llm = LlmScorer(
            settings.llm_base_url, settings.llm_model, settings.llm_api_key, timeout_s=settings.llm_timeout_s
        )
    return StageRunner(SentimentAnalysis(rt.db, llm=llm, aliases=_aliases(rt)), rt.bus, max_batch=500)


def _aggregation(rt: Runtime) -> Worker:
    from pipeline.stages.aggregation import Aggregation

    settings = rt.config.analysis
    stage = Aggregation(rt.db, thresholds=settings.alerts, window_minutes=settings.window_minutes)
    return StageRunner(stage, rt.bus, max_batch=1000)


FACTORIES: dict[str, WorkerFactory] = {
    "news-collector": _news_collector,
    "analysis-scheduler": _analysis_scheduler,
    "analysis-triggers": _analysis_triggers,
    "technical-analysis": _technical_analysis,
    "sentiment-analysis": _sentiment_analysis,
    "aggregation": _aggregation,
}
