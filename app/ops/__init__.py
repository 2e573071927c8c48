"""Operator's tools behind the `ciphervec` command (import, export, bench): they drive
the service layer directly against the database, beside the HTTP API."""
