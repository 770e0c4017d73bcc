"""AWS Lambda entry point of the import worker: one Distributed Map batch per invocation.

The same image as the API function, with this handler: on the lambda backend the model image (ONNX
Runtime), on the sagemaker backend the front image (whose ``sagemaker`` engine sends the batch to the
endpoint). The engine and the store are built at init, outside the handler.
"""

from runtime.libraries.imports.worker import Worker

worker = Worker.from_env()


def handler(event, context):
    return worker.handle(event)
