"""``python -m speechpipe``: the command line."""

from speechpipe.cli import main

main()
