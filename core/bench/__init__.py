"""Benchmarks behind ``chemlatent bench``."""
