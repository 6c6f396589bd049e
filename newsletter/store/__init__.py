"""The store: papers and digests in SQLite or PostgreSQL, their schema and migrations, ingest
of digest files, moving a store between backends."""
