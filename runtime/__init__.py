"""The Image Similarity runtime: one inference and API module for every backend."""
