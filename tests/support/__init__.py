"""What the tests share that is not a fixture: event builders, SOAP envelopes, client helpers and the test servers.

Plain modules: test modules, fixtures and benchmarks import from here, never from each other.
"""
