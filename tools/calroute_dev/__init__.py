"""calroute's developer tooling: the ``calroute`` console script (:mod:`calroute_dev.cli`), the local
stack (:mod:`calroute_dev.local`), offline evaluation (:mod:`calroute_dev.evaluation`,
:mod:`calroute_dev.evaluate`) and the evaluation report (:mod:`calroute_dev.report`).

Installed with the repository (``pip install -e .``), never shipped in a Lambda layer. It imports the
runtime package :mod:`calroute`; :mod:`calroute` never imports it (``.importlinter``).
"""
