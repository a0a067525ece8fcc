"""The ground floor: frozen plain data and tiny pure helpers.

Every other package of ``aarm_pdp`` may import from here; this package imports
nothing of the project but the error vocabulary (:mod:`aarm_pdp.errors`). No I/O,
no clock, no gRPC.

- :mod:`~aarm_pdp.model.request`: the validated request (identity, action, facts);
- :mod:`~aarm_pdp.model.decision`: decisions, reasons, tickets, policy versions;
- :mod:`~aarm_pdp.model.levels`: the data classification scale;
- :mod:`~aarm_pdp.model.redaction`: what counts as a secret and how it is withheld;
- :mod:`~aarm_pdp.model.timestamps`: RFC 3339 formatting of injected times.
"""
