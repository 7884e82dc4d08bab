"""SOAP edges: the legacy handleRequest endpoint and the typed Spyne service."""
