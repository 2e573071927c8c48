"""HTTP layer: routers by resource, dependencies, error mapping and request limits."""
