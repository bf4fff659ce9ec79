"""gunicorn settings for the `web` process (read from the same NANOEDIT_* environment)."""

import os

bind = f"{os.environ.get('NANOEDIT_HOST', '127.0.0.1')}:{os.environ.get('NANOEDIT_PORT', '8000')}"
workers = int(os.environ.get("NANOEDIT_WEB_WORKERS", "2"))
threads = int(os.environ.get("NANOEDIT_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
accesslog = None  # the app logs each request as JSON
errorlog = "-"
