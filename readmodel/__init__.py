"""The Redis read model: written by the worker (``streams/worker/view_feed.py``), read by the
API."""
