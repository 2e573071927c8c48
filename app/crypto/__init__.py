"""Cryptography of ciphervec: AEAD, envelope keys and keyed tokens. Pure, no I/O."""
