"""The event model (``model``) and its renderings (``formats``): every other part derives from them."""
