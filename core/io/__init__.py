"""Reading and writing: the survey store, spectrum readers, ingest, labels, latents files,
export and annotations."""
