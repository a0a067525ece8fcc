"""aarm-pdp: the AARM runtime decision service for AI-agent actions.

The public surface is small: ``aarm_pdp.server.start``/``serve`` to run it,
``aarm_pdp.config.Config`` to configure it, and the closed error vocabulary in
``aarm_pdp.errors``. Everything else is internal.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
