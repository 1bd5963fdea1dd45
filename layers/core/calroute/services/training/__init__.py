"""A training run, one module per state of ``infra/statemachine/training.asl.json``:

``plan`` (:mod:`.plan`) → (Distributed Map: EXPRESS child workflows of ``UsersPerBatch`` users, one user after the other) ``train_user`` (:mod:`.train_user`) →
``validate`` (:mod:`.validate`) → ``promote`` (:mod:`.promote`) → ``summarize`` (:mod:`.summarize`);
what they share (ids, run keys, the per-item handler wrapper) is in :mod:`.common`.

* ``plan`` writes the users to train to ``s3://<bucket>/runs/{runId}/users.json`` (the Map's
  ``ItemReader``) — always, for the scheduled run and for a one-user ``POST /train`` alike.
* ``train_user`` applies the gates, trains (sklearn, imported lazily: only TrainUserFunction has the
  training layer), writes the candidate ONNX and its parity fixtures to S3 and registers the
  candidate. Writes happen in that order, so a registry record never names a missing object.
* ``validate`` runs in the inference runtime (onnxruntime + numpy, **no sklearn**): sha256 of the
  stored bytes and fixtures, the model loads as serving loads it, and its probabilities reproduce
  sklearn's on the fixtures (max |Δp| ≤ 1e-4, no argmax flip). Failing → ``rejected``.
* ``promote``: champion/challenger on the candidate's holdout, then a conditional write of ACTIVE
  (retried once on a race, else ``conflict``).
* ``summarize``: reads the Map's results from S3 (its ``ResultWriter`` manifest under
  ``runs/{runId}/results/``), counts, durations, the run record, metrics.

Every function returns a small JSON-serialisable dict carrying ``user_id``, ``run_id`` and the
accumulated ``duration_ms``. numpy, the featurizer and onnxruntime are imported inside the states that
need them: Plan and Summarize run with the core layer only. A crash is turned into a ``failed`` result by the state machine's
``Catch`` (one user's failure never fails the run); the users of a child workflow that failed as a
whole are recovered by ``summarize`` from ``users.json`` and the registry.
"""
