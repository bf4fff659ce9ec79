"""gunicorn entry point: `gunicorn api.wsgi:app`."""

from api import create_app
from shared.logging_setup import configure_logging
from shared.settings import Settings

settings = Settings.from_env()
configure_logging(settings, process="web")
app = create_app(settings)
