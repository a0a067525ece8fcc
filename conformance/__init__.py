"""An open, reproducible AARM conformance suite for aarm-pdp.

``python -m conformance [--target host:port] [--report-dir conformance]`` checks every
row of the AARM conformance checklist (rows 1-61 of the requirements paraphrase) and
every replayable threat scenario (S01-S37) against a running deployment, black-box:
gRPC (DecisionService, SessionService, ApprovalService, DeferralService,
ReceiptService, health), the Prometheus endpoint, and offline verification of the
receipts it hands out. Without ``--target`` it starts ``aarm-pdp serve`` on its
embedded defaults itself (plus two auxiliary instances for the checks that need a
broken policy, short timeouts or a killable context store), so it can also kill the
managed OPA child and read the Redis context log; against an external target those
checks are reported ``not-checkable``.

Results per row/scenario: ``pass``, ``fail``, ``not-applicable``, ``not-implemented``
or ``not-checkable``, with evidence (decision ids, receipt ids, reason codes). The
report goes to ``report.md`` and ``report.json``; the exit code is 1 when any
applicable MUST row or scenario fails.
"""
