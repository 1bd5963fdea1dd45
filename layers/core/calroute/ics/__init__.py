"""iCalendar (RFC 5545) import: every VEVENT becomes a labelled :class:`~calroute.schema.Event`.

:mod:`.reader` (``read_ics``/``parse_ics``/``import_window``) drives :mod:`.parse` (decoding, the
pre-scan, the parser), :mod:`.expand` (recurrence within the bounds) and :mod:`.mapping` (a
VEVENT's values → an event and its id).

Parsing is done by ``icalendar``; recurrence (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides,
``X-WR-TIMEZONE``) by ``recurring-ical-events``. Nothing here reads iCalendar syntax by hand except a
line-level pre-scan that counts ``BEGIN:`` lines so that an "ICS bomb" (absurd nesting or component
counts) is rejected before the parser builds a tree.

Bounds (every one raises :class:`~calroute.errors.InvalidInput` naming the limit, field ``body``):

* ``max_bytes``                     → :class:`~calroute.errors.PayloadTooLarge`;
* :data:`~.parse.MAX_DEPTH` component nesting, :data:`~.parse.MAX_COMPONENTS` components;
* ``max_occurrences`` events in total (single events + expanded occurrences);
* :data:`~.expand.MAX_RULE_STEPS` RRULE work (FREQ periods walked from DTSTART, also before the window
  start, plus starts yielded), so that a ``FREQ=SECONDLY`` rule is rejected before it burns CPU;
* :data:`~.expand.MAX_EXPANSION_CPU_SECONDS` of CPU for all recurring expansion (a rule that never matches
  makes dateutil walk to the year 9999);
* without a window, a series is expanded for at most :data:`~.expand.MAX_SERIES_YEARS` years past its start
  (until UNTIL/COUNT if earlier); with a window, recurring expansions are limited to the window while
  single events are kept whatever their date.

Event ids are deterministic, so re-importing the same file upserts the same items:
the UID (+ ``:`` + recurrence id for occurrences of a recurring series) when that is a valid event
id, else ``ids.derived_event_id(uid, recurrence id)``; a VEVENT without UID gets
``ids.derived_event_id(calendar id, DTSTART, SUMMARY[, recurrence id])``.

VEVENTs that cannot become an event (no or broken DTSTART, broken DTEND/DURATION/RRULE, year outside
1900-2200, ``STATUS:CANCELLED``) are skipped and counted, never fatal.
"""
