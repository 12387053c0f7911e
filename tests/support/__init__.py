"""What the tests and the benchmarks share: real broker processes started on port 0
(broker.py), a moto server that serves one request at a time (moto.py), waiting for a
condition instead of sleeping (wait.py), and the Kafka client drivers (clients.py,
group_clients.py). See tests/README.md."""
