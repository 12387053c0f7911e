"""Security: listeners, TLS, SASL (PLAIN, SCRAM), ACL authorization and client quotas.

Everything here except ``tls.py`` is sans-I/O: the server and handlers feed it bytes and
records from the metadata store.
"""
