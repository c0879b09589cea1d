"""WSGI entry point: `gunicorn wsgi:app`."""

from labinterp.app import create_app

app = create_app()
