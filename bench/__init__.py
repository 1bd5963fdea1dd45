"""calroute benchmarks: ``python -m bench [--json] [--quick]`` (see docs/benchmarks.md)."""
