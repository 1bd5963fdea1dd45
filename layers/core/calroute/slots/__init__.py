"""Slot extraction: from what a user says to an event draft (issue 13).

Rules first (:mod:`.when` finds dates and times and lets ``dateparser`` resolve them against the
user's ``now``; :mod:`.names` finds the title, the location and the attendees by the phrasings the
data shows), each value with a confidence (:mod:`.confidence`: ``needs_confirmation`` is false only
where the benchmark certifies ≥ 97 % right), put together by :func:`calroute.slots.extract.extract`.
What the rules leave empty or unsure goes to the LLM fallback function as a second task
(:mod:`calroute.llm.slots`, :class:`calroute.services.parse.ParseService`).

Imported by the parse function only: the predict function never imports this package (nor
``dateparser``); a test checks it.
"""
