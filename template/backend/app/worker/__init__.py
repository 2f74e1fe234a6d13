"""Background jobs: the queue seam the app enqueues through, the jobs, and the worker."""
