"""AWS Lambda entry point: the runtime's ASGI app behind API Gateway's Lambda proxy integration.

The app (and with it the model) is built at init, outside the handler, so only the first request
of a new instance pays for it; the model loads in a thread while the web stack is imported.
Settings come from the function's ``IMSIM_*`` environment.
``lambda_entry`` adds Powertools: JSON logs with the invocation's context, EMF metrics flushed
after every event, X-Ray traces when the function has active tracing.
"""

from runtime.allocator import keep_freed_memory
from runtime.engines import load_engine_in_background
from runtime.settings import Settings

keep_freed_memory()  # each request's large buffers reuse the last one's pages (runtime/allocator.py)
settings = Settings.from_env()
engine = load_engine_in_background(settings)  # the model loads while the web stack is imported

from mangum import Mangum  # noqa: E402

from runtime.api.app import create_app  # noqa: E402
from runtime.observability import lambda_entry  # noqa: E402

handler = lambda_entry(Mangum(create_app(settings, engine=engine.result()), lifespan="off"))
