"""The CDK app that deploys the Image Similarity API: one module per concern (see ``builder.py``)."""
