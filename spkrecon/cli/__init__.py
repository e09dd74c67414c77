"""Command-line interface (typer). Importing it must not import torch."""

from spkrecon.cli.app import app, main

__all__ = ["app", "main"]
