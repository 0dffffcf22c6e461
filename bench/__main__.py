"""`python -m bench`: what `make bench` runs."""
import sys

from .runner import main

sys.exit(main())
