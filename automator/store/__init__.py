"""Storage: the Snapshot the core reads, and the SQLite store that keeps entities, runs, timers and effects."""
