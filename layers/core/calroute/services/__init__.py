"""Use cases composed from the core modules and the adapters (ingest, predict, train, stats, ...)."""
