"""The HTTP side of immunorad (Flask, served by gunicorn): /fhir, /api, /ui, /cds-services, health and metrics."""

from service.api.app import create_app

__all__ = ["create_app"]
