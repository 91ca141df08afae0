"""The draw-a-digit web app (``digitnet serve``): a FastAPI app and its static page.

Needs the ``web`` extra: ``pip install 'digitnet[web]'``.
"""

from .app import create_app

__all__ = ["create_app"]
