"""Synthetic surveys: stellar populations and the spectrum generator."""
