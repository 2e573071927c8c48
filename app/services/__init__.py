"""Use cases: each function is one transaction over store, crypto, kms and ivf."""
