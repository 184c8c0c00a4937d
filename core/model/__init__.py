"""The disentangled VAE: network, features, training, device choice, calibration,
evaluation and model files."""
