"""SQLite storage: one writer thread per database, readers on their own connections."""
