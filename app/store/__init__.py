"""PostgreSQL storage: table definitions and repositories. All SQL lives here."""
