"""The pipeline's errors. Each class states the policy the runner applies to it."""

from __future__ import annotations

from dataclasses import dataclass


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """Bad configuration or an unreachable dependency: fatal at start, shown as one line."""


class TransientError(PipelineError):
    """A failure that may pass (a busy database, a broker hiccup): retried with backoff."""


@dataclass(frozen=True)
class Violation:
    """One broken rule: which field, which value, which rule."""

    field: str
    value: object
    rule: str

    def __str__(self) -> str:
        return f"{self.field}={self.value!r} breaks rule: {self.rule}"


class BadMessageError(PipelineError):
    """A message that can never be processed: dead-lettered with the reason; the stage goes on."""

    def __init__(self, violations: list[Violation] | str) -> None:
        if isinstance(violations, str):
            violations = [Violation(field="", value=None, rule=violations)]
        self.violations = violations
        super().__init__("; ".join(str(v) if v.field else v.rule for v in violations))


class UnknownTopicError(ConfigError):
    """A topic that is neither in the catalog nor on the bus."""


class UnknownPartitionError(PipelineError):
    """A partition number a topic does not have: one line naming the topic and its partitions."""


class CommitFailedError(TransientError):
    """A commit from a consumer whose group has rebalanced since it fetched: messages come again."""


class OutputsNotDelivered(TransientError):
    """Outputs of a batch were not delivered, so its offsets were not committed (``undelivered``: how many)."""

    def __init__(self, undelivered: int) -> None:
        super().__init__(f"outputs not delivered ({undelivered}); not committing")
        self.undelivered = undelivered
