"""Load benchmarks for frontdoor (see bench/README.md)."""
