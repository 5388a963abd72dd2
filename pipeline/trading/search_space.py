"""What a walk-forward optimisation searches: the strategy's parameters, each a range or a set.

``SearchSpace`` holds a ``Range`` per number (signal thresholds, confidence levels, stop, target,
trailing stop, position and risk sizes) and the choices for the sizing rule and the confirming
models. A range whose ends are equal is fixed, not searched. ``check`` refuses an impossible space
with every parameter at fault named; ``sample`` draws one set from an Optuna trial and
``params_to_settings`` turns a set into what the paper trader runs with (``RiskSettings`` and the
thresholds) and into its ``.env`` names (``ENV_NAMES``), so a chosen set can be saved as the
desk's settings.

Nothing here runs a backtest; ``pipeline.trading.walk_forward`` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import Trial

from pipeline.errors import PipelineError
from pipeline.trading.risk import SIZINGS, RiskSettings

NO_CONFIRM = "none"


class OptimiseError(PipelineError):
    """An optimisation that cannot run: an impossible search space, too little history, no model.
    The message names the parameter (or says how much history is needed)."""


@dataclass(frozen=True)
class Range:
    """A closed range of a number; ``low == high`` fixes it."""

    low: float
    high: float

    @property
    def fixed(self) -> bool:
        return self.low == self.high


# (name, what it must be, the test) for each range
_RULES: dict[str, tuple[str, Any]] = {
    "buy_pct": ("a BUY threshold >= 0 %", lambda x: x >= 0),
    "sell_pct": ("a SELL threshold <= 0 %", lambda x: x <= 0),
    "medium_confidence": ("a confidence > 0 and <= 1", lambda x: 0 < x <= 1),
    "high_confidence": ("a confidence > 0 and <= 1", lambda x: 0 < x <= 1),
    "stop_loss_pct": ("a stop under the entry and above zero: > 0 and < 100 %", lambda x: 0 < x < 100),
    "take_profit_pct": ("a target above the entry: > 0 %", lambda x: x > 0),
    "trailing_stop_pct": ("a trailing distance >= 0 (0 = off) and < 100 %", lambda x: 0 <= x < 100),
    "position_pct": ("a size > 0 and <= 100 % of equity", lambda x: 0 < x <= 100),
    "risk_pct": ("a risk > 0 and <= 100 % of equity", lambda x: 0 < x <= 100),
}

# the paper trader's setting of each parameter (pipeline.config reads them)
ENV_NAMES = {
    "buy_pct": "ML_BUY_THRESHOLD_PCT",
    "sell_pct": "ML_SELL_THRESHOLD_PCT",
    "medium_confidence": "DECISION_MEDIUM_CONFIDENCE",
    "high_confidence": "DECISION_HIGH_CONFIDENCE",
    "stop_loss_pct": "STOP_LOSS_PCT",
    "take_profit_pct": "TAKE_PROFIT_PCT",
    "trailing_stop_pct": "TRAILING_STOP_PCT",
    "position_pct": "POSITION_PCT",
    "risk_pct": "RISK_PER_TRADE_PCT",
    "sizing": "POSITION_SIZING",
    "confirm": "DECISION_CONFIRM_MODELS",
}


@dataclass(frozen=True)
class SearchSpace:
    """The ranges and choices to search (defaults: a broad space around seed 001's settings)."""

    buy_pct: Range = Range(0.01, 1.0)
    sell_pct: Range = Range(-1.0, -0.01)
    medium_confidence: Range = Range(0.55, 0.75)
    high_confidence: Range = Range(0.7, 0.95)
    stop_loss_pct: Range = Range(0.5, 5.0)
    take_profit_pct: Range = Range(0.5, 10.0)
    trailing_stop_pct: Range = Range(0.0, 3.0)
    position_pct: Range = Range(5.0, 50.0)
    risk_pct: Range = Range(0.25, 5.0)
    sizing: tuple[str, ...] = SIZINGS
    confirm: tuple[str, ...] = (NO_CONFIRM,)  # "none", a model, or models joined by "+"

    def ranges(self) -> dict[str, Range]:
        return {name: getattr(self, name) for name in _RULES}

    def check(self, known_models: tuple[str, ...] = ()) -> None:
        """Raise ``OptimiseError`` naming every impossible parameter; an empty space is one."""
        problems = []
        for name, r in self.ranges().items():
            what, ok = _RULES[name]
            if r.low > r.high:
                problems.append(f"{name}: the range {r.low:g} to {r.high:g} is empty (its low is above its high)")
                continue
            bad = [x for x in (r.low, r.high) if not ok(x)]
            if bad:
                problems.append(f"{name}: {bad[0]:g} is not {what}")
        medium, high = self.medium_confidence, self.high_confidence
        if high.high < medium.low:
            problems.append(
                f"high_confidence: its range (up to {high.high:g}) lies under medium_confidence's "
                f"(from {medium.low:g}); a high confidence is at least the medium one"
            )
        if not self.sizing:
            problems.append("sizing: no sizing rule to try")
        problems += [f"sizing: {s!r} is not one of {', '.join(SIZINGS)}" for s in self.sizing if s not in SIZINGS]
        if not self.confirm:
            problems.append(f"confirm: no choice of confirming models to try ({NO_CONFIRM!r} for none)")
        for choice in self.confirm:
            unknown = [m for m in confirm_models(choice) if known_models and m not in known_models]
            if unknown:
                problems.append(
                    f"confirm: {', '.join(unknown)} in {choice!r} is not a model ({', '.join(known_models)})"
                )
        if not problems and not self.distributions():
            problems.append("the search space is empty: every range is a single value and every set has one choice")
        if problems:
            raise OptimiseError("; ".join(problems))

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's distribution of each searched parameter (fixed ones are left out)."""
        out: dict[str, BaseDistribution] = {
            name: FloatDistribution(r.low, r.high) for name, r in self.ranges().items() if not r.fixed
        }
        if len(self.sizing) > 1:
            out["sizing"] = CategoricalDistribution(self.sizing)
        if len(self.confirm) > 1:
            out["confirm"] = CategoricalDistribution(self.confirm)
        return out

    def fixed(self) -> dict[str, Any]:
        """The parameters that are not searched, at their one value."""
        out: dict[str, Any] = {name: r.low for name, r in self.ranges().items() if r.fixed}
        if len(self.sizing) == 1:
            out["sizing"] = self.sizing[0]
        if len(self.confirm) == 1:
            out["confirm"] = self.confirm[0]
        return out

    def sample(self, trial: Trial) -> dict[str, Any]:
        """Draw one set of parameters from ``trial`` (all of them, the fixed ones included)."""
        params = self.fixed()
        for name, dist in self.distributions().items():
            if isinstance(dist, FloatDistribution):
                params[name] = trial.suggest_float(name, dist.low, dist.high)
            elif isinstance(dist, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, [str(c) for c in dist.choices])
        return params

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchSpace:
        kwargs: dict[str, Any] = {}
        for name in _RULES:
            if name in data:
                low, high = (data[name]["low"], data[name]["high"]) if isinstance(data[name], dict) else data[name]
                kwargs[name] = Range(float(low), float(high))
        for name in ("sizing", "confirm"):
            if name in data:
                kwargs[name] = tuple(data[name])
        return cls(**kwargs)


def confirm_models(choice: str) -> tuple[str, ...]:
    """The models of a ``confirm`` choice ("none", "svm", "svm+logistic_regression")."""
    return () if choice in ("", NO_CONFIRM) else tuple(m for m in choice.split("+") if m)


def params_to_settings(
    params: dict[str, Any], base: RiskSettings
) -> tuple[float, float, RiskSettings, tuple[str, ...]]:
    """(buy %, sell %, risk settings, confirming models) of a parameter set; the risk settings
    not searched come from ``base``. A high confidence under the medium one is raised to it."""
    medium = float(params["medium_confidence"])
    risk = dataclasses.replace(
        base,
        stop_loss_pct=float(params["stop_loss_pct"]),
        take_profit_pct=float(params["take_profit_pct"]),
        trailing_stop_pct=float(params["trailing_stop_pct"]),
        sizing=params["sizing"],
        position_pct=float(params["position_pct"]),
        risk_pct=float(params["risk_pct"]),
        medium_confidence=medium,
        high_confidence=max(medium, float(params["high_confidence"])),
    )
    return float(params["buy_pct"]), float(params["sell_pct"]), risk, confirm_models(str(params["confirm"]))


def params_to_env(params: dict[str, Any]) -> dict[str, str]:
    """The ``.env`` settings that make the paper trader run with ``params``."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if name not in ENV_NAMES:
            continue
        if name == "confirm":
            models = confirm_models(str(value))
            out[ENV_NAMES[name]] = ",".join(models) if models else NO_CONFIRM
        elif name == "high_confidence":
            out[ENV_NAMES[name]] = f"{max(float(value), float(params['medium_confidence'])):.10g}"
        elif isinstance(value, str):
            out[ENV_NAMES[name]] = value
        else:
            out[ENV_NAMES[name]] = f"{float(value):.10g}"
    return out
