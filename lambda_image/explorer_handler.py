"""AWS Lambda entry point of the deployed API Explorer (``GET /api-explorer`` and the paths under it).

It builds the runtime's app with its whole route table, which the OpenAPI document is generated
from, but loads no model and never imports torch: it runs from the ``front`` image with the command
``explorer_handler.handler``. "Try it out" calls the API's own functions through the stage URL that
the document's ``servers`` entry carries. ``IMSIM_AUTH`` tells the page how the API is protected.
Logs, metrics and traces as in ``handler.py``.
"""

from mangum import Mangum

from runtime.api.app import create_app
from runtime.observability import lambda_entry
from runtime.settings import Settings

# The explorer never reads a library: no store is opened, so the function needs no storage permission.
settings = Settings.from_env(explorer=True, store="off")
handler = lambda_entry(Mangum(create_app(settings, serve_model=False), lifespan="off"))
