"""ciphervec: an encrypted vector database over PostgreSQL."""
