"""Start an RQ worker for the app's queues: `python worker.py` (what compose and make run use)."""
import sys

from app import create_app
from app.queue import run_worker

if __name__ == "__main__":
    app = create_app()
    with app.app_context():
        run_worker(burst="--burst" in sys.argv[1:])
