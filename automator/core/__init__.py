"""The pure core: routing, running and deciding. Nothing here does I/O."""
