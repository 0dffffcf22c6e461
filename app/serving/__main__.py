"""`python -m app.serving`: the web server, as `make serve`, compose and `make run` start it."""
import sys

from .server import main

sys.exit(main(sys.argv[1:]))
