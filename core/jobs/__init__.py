"""Background work: the shared re-encoding queue and the first-run preparation."""
