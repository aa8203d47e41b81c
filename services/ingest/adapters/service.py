"""From translated records to acknowledged Kafka messages, for the adapter routes.

The events of a native record go the way of ``POST /v1/events``: validated one by one, and
stored by the same producer, answered only once Kafka acknowledged every one. A record is
taken or rejected whole: an event of it that validation refuses rejects its record.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

from prometheus_client import Counter

from services.ingest.adapters.common import AdapterContext, RawEvent, TranslationError
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings
from shared.auth import Principal
from shared.dispositions import cached_dispositions
from shared.errors import InvalidInput
from shared.events import BaseEvent, FieldError

log = logging.getLogger(__name__)

RECORDS = Counter(
    "callboard_ingest_adapter_records_total",
    "Native records the adapters received, by system and outcome (stored, rejected, set_aside)",
    ["system", "outcome"],
)


@dataclass(frozen=True, slots=True)
class RecordRejection:
    index: int
    reason: str
    errors: list[FieldError]


def _field_errors(exc: TranslationError) -> list[FieldError]:
    return [FieldError(field=exc.field, message=exc.message)]


class AdapterService:
    def __init__(self, settings: IngestSettings, ingest: IngestService) -> None:
        self.settings = settings
        self.ingest = ingest

    @cached_property
    def context(self) -> AdapterContext:
        secret = self.settings.lead_id_secret
        return AdapterContext.create(
            self.settings.source_timezone or self.settings.timezone,
            secret.get_secret_value() if secret else None,
            cached_dispositions(self.settings.dispositions_file),
        )

    def check_one(self, system: str, translate: Callable[[], list[RawEvent]]) -> list[BaseEvent]:
        """The validated events of one record, or 422 naming what is wrong with it."""
        try:
            raw = translate()
        except TranslationError as exc:
            RECORDS.labels(system, "rejected").inc()
            log.info("native record rejected", extra={"system": system, "field": exc.field})
            raise InvalidInput(
                f"the {system} record cannot be used: {exc}",
                details=[error.model_dump() for error in _field_errors(exc)],
            ) from exc
        accepted, rejected = self.ingest.validate(raw)
        if rejected:
            RECORDS.labels(system, "rejected").inc()
            errors = [e.model_dump() for r in rejected for e in r.errors]
            raise InvalidInput(
                f"the {system} record gives events that are not valid: "
                + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                details=errors,
            )
        return accepted

    def check_many(
        self, system: str, records: Iterable[Callable[[], list[RawEvent]]]
    ) -> tuple[list[BaseEvent], list[RecordRejection]]:
        """The events of the records that translate and validate; the others, with reasons.

        ``records`` is read once, in order: each record's translation may be made (and its
        native document freed) as its turn comes.

        The events of all records are validated in one pass, then a record with any event
        refused is set aside whole.
        """
        raw: list[RawEvent] = []
        origins: list[int] = []
        rejections: dict[int, RecordRejection] = {}
        for index, translate in enumerate(records):
            try:
                translated = translate()
            except TranslationError as exc:
                rejections[index] = RecordRejection(index, str(exc), _field_errors(exc))
                continue
            raw.extend(translated)
            origins.extend([index] * len(translated))
        accepted, rejected = self.ingest.validate(raw) if raw else ([], [])
        for rejection in rejected:
            index = origins[rejection.index]
            reason = "; ".join(f"{e.field}: {e.message}" for e in rejection.errors)
            if index not in rejections:
                rejections[index] = RecordRejection(index, reason, list(rejection.errors))
        if not rejected:
            return accepted, list(rejections.values())
        # validate() keeps the accepted events in order: pair them back with their records.
        refused_positions = {r.index for r in rejected}
        kept_origins = [o for i, o in enumerate(origins) if i not in refused_positions]
        events = [e for e, o in zip(accepted, kept_origins, strict=True) if o not in rejections]
        return events, sorted(rejections.values(), key=lambda r: r.index)

    def set_aside(self, system: str, index: int, reason: str, record: bytes) -> None:
        """Log a record that cannot be used, by its digest: its content may be personal."""
        RECORDS.labels(system, "set_aside").inc()
        log.warning(
            "native record set aside",
            extra={
                "system": system,
                "record_index": index,
                "reason": reason,
                "record_sha256": hashlib.sha256(record).hexdigest(),
                "record_bytes": len(record),
            },
        )

    def publish(
        self,
        system: str,
        events: list[BaseEvent],
        records: int,
        request_id: str,
        dialer: Principal,
    ) -> None:
        """Blocking: returns once Kafka acknowledged every event (503 otherwise); a key
        limited to teams is held to them as on ``POST /v1/events`` (403, nothing stored)."""
        if events:
            self.ingest.check_teams(dialer, events, [], len(events))
            self.ingest.publish(events, request_id, only_given=True)
        RECORDS.labels(system, "stored").inc(records)
