"""Idempotent producers and transactions: per-partition producer state and the transaction
coordinator (state durable in the MetadataStore, markers written by partition leaders)."""
