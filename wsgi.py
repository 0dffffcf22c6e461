"""WSGI entry point: `gunicorn wsgi:app`, and `flask --app wsgi ...` for the CLI."""
import gc

from app import create_app

app = create_app()
# The objects built so far live as long as the process: freezing them spares every
# full collection a walk over ~100,000 of them, which batch requests, creating
# tens of thousands of short-lived objects each, would otherwise trigger often.
gc.freeze()
