"""Running the service: configuration from the environment (and its generated reference), logs without PHI,
Prometheus metrics, ``immunorad serve`` (every role on one machine), the roles' small HTTP server and the API's
gunicorn worker."""
