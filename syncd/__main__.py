"""`python -m syncd` runs the command line."""

from syncd.cli.main import main

main()
