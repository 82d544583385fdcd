"""Tests of the stream package."""
