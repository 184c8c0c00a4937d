"""Encoding spectra into latents: streaming inference, subset re-encodings (runs),
Dask and out-of-core access."""
