"""DynamoDB adapters, one module per store (see template.yaml for the tables):

* :mod:`.events`       events       pk ``user_id``, sk ``event_id`` — labelled events (flat JSON in ``data``)
* :mod:`.users`        users        pk ``user_id``, sk ``PROFILE`` | ``CAL#<calendarId>`` | ``CORR#<ts>#<eventId>``
* :mod:`.registry`     registry     pk ``user_id``, sk ``MODEL#<version>`` | ``ACTIVE`` | ``AUDIT#<ts>``;
  training-run records under pk ``_run`` (user ids never start with ``_``)
* :mod:`.predictions`  predictions  pk ``user_id``, sk ``event_id`` — prediction log, TTL ``expires_at``
* :mod:`.usage`        usage        pk ``user_id`` | ``_global``, sk ``<yyyy-mm-dd>`` — LLM tokens and USD, TTL

Every method takes the (already validated) user id and only ever touches keys under it: a user can
never read or write another user's items. :mod:`.base` holds what they share. Each class implements
the port of the same role in :mod:`calroute.ports`.
"""
