"""Bulk imports: many images into a library in one job (sources, job records, batches, runners)."""
