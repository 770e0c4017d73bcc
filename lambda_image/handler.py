"""AWS Lambda entry point: the runtime's ASGI app behind API Gateway's Lambda proxy integration.

The app (and with it the model) is built at init, outside the handler, so only the first request
of a new instance pays for it. Settings come from the function's ``IMSIM_*`` environment.
"""

from mangum import Mangum

from runtime.api.app import create_app

handler = Mangum(create_app(), lifespan="off")
