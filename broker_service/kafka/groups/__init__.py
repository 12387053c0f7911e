"""Consumer-group coordinator (classic and KIP-848) and offset storage: the groups issue."""
