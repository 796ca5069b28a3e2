"""Kedro pipelines, one folder each: thin nodes around the library."""
