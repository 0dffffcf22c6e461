"""The web process: granian's master and workers (`server.py`) and the front that reads each request whole
before a thread runs the app (`front.py`)."""
