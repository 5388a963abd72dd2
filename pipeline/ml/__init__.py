"""Features, models, walk-forward evaluation, the model registry and training for price signals."""
