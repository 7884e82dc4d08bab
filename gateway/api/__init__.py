"""REST edges: a Flask blueprint per resource (events, batches, webhooks, destinations, routes, notices, stats,
account, metrics), with authentication, request parsing and the error answers shared among them."""
