"""SageMaker entry point: ``GET /ping`` and ``POST /invocations`` on port 8080.

SageMaker starts the container as ``docker run IMAGE serve``; the Dockerfile's entry point runs
this module, which serves the runtime's app (with the ``/invocations`` route) under uvicorn.
Its log lines are JSON (Powertools' format, as the Lambda functions write them) unless
``IMSIM_LOG_FORMAT`` says otherwise; SageMaker sends them to CloudWatch Logs. It emits no EMF
metrics: SageMaker's own ``AWS/SageMaker`` metrics cover the endpoint, and the front function
counts the requests.
"""

import os
import sys

from runtime.cli import main

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "serve"]
    port = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")
    os.environ.setdefault("IMSIM_LOG_FORMAT", "json")
    sys.exit(main(["serve", "--host", "0.0.0.0", "--port", port, "--sagemaker", *args]))
