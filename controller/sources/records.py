"""What the sample log hands out: results of writes and the changes a consumer reads.

Pure data, shared by the SQLite adapter (:mod:`.store`) and the ports
(:mod:`controller.ports`), so another adapter (a shared PostgreSQL log) returns the same
shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controller.models import Sample, Verdict


@dataclass(frozen=True)
class InsertResult:
    accepted: int
    duplicates: int
    accepted_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedbackResult:
    applied: int
    pending: int


@dataclass(frozen=True)
class StoredSample:
    """A sample as stored: the record with feedback applied, plus the controller's verdict."""

    sample: Sample
    received_at: datetime
    verdict: Verdict | None


@dataclass(frozen=True)
class SampleChange:
    """One sample touched since the consumer's cursor.

    ``previous`` is what the consumer last saw (``None``: the sample is new to it);
    ``current`` is the sample now. ``verdict`` is the stored verdict, which applies to
    ``current``; ``verdict_before`` is the verdict that went with ``previous`` (``None``
    for a new sample); they differ only when a verdict arrived after the sample was
    counted (a judged retry), which is logged as a change.
    """

    sample_id: str
    previous: Sample | None
    current: Sample
    verdict: Verdict | None
    verdict_before: Verdict | None
    received_at: datetime

    @property
    def is_new(self) -> bool:
        return self.previous is None


@dataclass(frozen=True)
class Quarantined:
    """A stored sample that could not be read back and was moved aside."""

    sample_id: str
    reason: str
    """What failed to decode (field and problem; never the stored values)."""


@dataclass(frozen=True)
class QuarantineReport:
    """How many of a rule's samples are in quarantine, and the latest."""

    count: int
    latest: Quarantined | None


@dataclass(frozen=True)
class ChangeBatch:
    changes: list[SampleChange]
    cursor: int
    """Pass this back as ``after`` next time (and commit it once the batch is counted)."""
    more: bool
    """True when the limit stopped the read: call again with the new cursor."""
    quarantined: tuple[Quarantined, ...] = ()
    """Samples in the range that could not be decoded: moved aside, left out of
    ``changes`` (the cursor moved past them)."""


@dataclass(frozen=True)
class AwaitingVerdict:
    """A stored sample the judge has not concluded on yet."""

    sample: Sample
    seq: int
    """Sequence of the change that inserted it."""
    attempts: int
    """Judge attempts that failed transiently so far."""


@dataclass(frozen=True)
class PruneResult:
    samples: int
    pending_feedback: int
