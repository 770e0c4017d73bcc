"""AWS Lambda entry point of the import worker: one Distributed Map batch per invocation.

The same image as the API function, with this handler: on the lambda backend the model image (ONNX
Runtime), on the sagemaker backend the front image (whose ``sagemaker`` engine sends the batch to the
endpoint). The engine and the store are built at init, outside the handler. ``lambda_entry`` gives it
what the API's function has: JSON logs with the invocation's context, and the import's EMF metrics.
"""

from runtime.allocator import keep_freed_memory
from runtime.libraries.imports.worker import Worker
from runtime.observability import lambda_entry

keep_freed_memory()  # each batch's images reuse the last one's pages (runtime/allocator.py)
worker = Worker.from_env()


def handle_batch(event, context):
    return worker.handle(event)


handler = lambda_entry(handle_batch)
