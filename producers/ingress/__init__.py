"""The thin HTTP ingress: authenticate, validate, publish, stream results."""

from producers.ingress.app import create_app

__all__ = ["create_app"]
