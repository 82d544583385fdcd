"""Tests of the sinks package."""
