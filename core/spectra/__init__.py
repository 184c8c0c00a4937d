"""Spectra on the model's wavelength grid: the grid, continuum normalisation, line physics
and the line list."""
