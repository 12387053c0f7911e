"""Producer ids, idempotence state, transactions: the txn issue.

Today only InitProducerId for non-transactional producers exists (handlers/producer_ids.py).
"""
