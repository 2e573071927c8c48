"""Wire models: CyborgDB v1 field names, defaults and response shapes."""
