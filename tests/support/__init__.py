"""The one test-support package, shared by tests/, conformance/ and bench/.

- ``paths``: where things are in the checkout;
- ``ports``: free loopback ports;
- ``processes``: ``aarm-pdp serve`` and ``opa run`` command lines, start-and-wait,
  the ``READY <port>`` handshake, redis-server and PostgreSQL for a run;
- ``grpc_clients``: stubs for every aarm.v1 service on one channel (blocking or aio);
- ``service``: the service's test configs and an in-process server with its clients;
- ``messages``: DecideRequest builders and OPA decision documents;
- ``scenarios``: the scenario schema, loader and the one runner (aio and blocking);
- ``pki``: test CA, certificates, JWKS and JWTs.

conformance/ and bench/ run from the repository root (``python -m conformance``,
``python -m bench.run``), where ``tests`` is importable. Nothing here imports pytest.
"""
