"""`python -m hwq.cli ...`: the `hwq` command without its console script."""

from hwq.cli import main

main()
