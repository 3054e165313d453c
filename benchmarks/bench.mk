# Benchmarks (issue 6): `make bench` runs every scenario of benchmarks/ against its own anvil, data dirs and
# API server, and writes benchmarks/results/latest.json, the PNG plots and the table in BENCHMARKS.md.
# Included from the Makefile; nothing here runs in `make test`. Budget: under 15 minutes on 2 cores.
.PHONY: bench

bench: build
	$(PY) -m benchmarks.run
