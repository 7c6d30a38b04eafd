"""`python -m automator` runs the CLI."""
from automator.cli import main

main()
