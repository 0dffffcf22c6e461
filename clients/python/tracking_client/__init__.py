"""A client for the user-activity tracking service: `Tracker` batches events in the background and delivers each
exactly once."""
from ._tracker import DeliveryError, Stats, Tracker

__all__ = ["DeliveryError", "Stats", "Tracker"]
__version__ = "0.1.0"
