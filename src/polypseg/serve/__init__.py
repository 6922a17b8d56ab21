"""``polypseg serve``: an HTTP service (FastAPI + uvicorn, extra ``serve``) and a browser viewer for a
trained model.

``create_app`` builds the app around a Predictor or a model path; ``ServeSettings`` holds its limits
(upload size, pixels, workers, queue, timeout, API key). See docs/serving.md.
"""

from polypseg.serve.app import create_app
from polypseg.serve.limits import ServeError, ServeSettings

__all__ = ["ServeError", "ServeSettings", "create_app"]
