# Reliability targets (included by the Makefile).
#   make soak   bounded load/soak against a real `consent-ledger up`: 50,000 mixed operations from 32 clients
.PHONY: soak

SOAK_ARGS ?= --ops 50000 --clients 32

soak: build
	$(PY) scripts/soak.py $(SOAK_ARGS)
