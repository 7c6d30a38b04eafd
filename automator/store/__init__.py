"""Storage: the Store contract and the Snapshot the core reads (base.py), and the SQLite store that keeps entities, runs, timers, effects and the journal."""
