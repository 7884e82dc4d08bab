"""eventgw: an event-notification gateway for email and SMS marketing platforms."""
