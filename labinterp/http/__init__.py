"""The HTTP layer every door shares: JSON bodies, the v1 schemas, problem details, the error handler."""
