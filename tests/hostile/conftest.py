"""Hostile-input tests reuse the API tests' in-process app and role helpers."""

from __future__ import annotations

from tests.api.conftest import Api, api, assert_problem

__all__ = ["Api", "api", "assert_problem"]
