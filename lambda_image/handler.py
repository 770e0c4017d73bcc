"""AWS Lambda entry point: the runtime's ASGI app behind API Gateway's Lambda proxy integration.

The app (and with it the model) is built at init, outside the handler, so only the first request
of a new instance pays for it. Settings come from the function's ``IMSIM_*`` environment.
``lambda_entry`` adds Powertools: JSON logs with the invocation's context, EMF metrics flushed
after every event, X-Ray traces when the function has active tracing.
"""

from mangum import Mangum

from runtime.allocator import keep_freed_memory
from runtime.api.app import create_app
from runtime.observability import lambda_entry

keep_freed_memory()  # each request's large buffers reuse the last one's pages (runtime/allocator.py)
handler = lambda_entry(Mangum(create_app(), lifespan="off"))
