"""Enumerable completion spaces: exact model distributions, known targets, a tiny-model harness."""
