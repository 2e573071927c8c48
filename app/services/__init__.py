"""Use cases: each function is one request's work over the engine, store, crypto, kms and ivf."""
