"""Delivery transports: each sink delivers one batch of rendered events and raises DeliveryError on failure."""
