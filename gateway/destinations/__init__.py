"""Destination kinds, routing, and the management of destinations."""
