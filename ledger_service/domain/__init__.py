"""The pure core: consent rules, record versioning and identifiers. No I/O here."""
