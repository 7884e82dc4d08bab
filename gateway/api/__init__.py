"""REST edges: Flask blueprints for ingest, pull, management, health and metrics."""
