"""The delivery engine: leasing and settling batches, push delivery, file export, retention."""
