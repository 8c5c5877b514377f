"""The Redis read model: written by the worker (``streams/view_feed.py``), read by the API."""
