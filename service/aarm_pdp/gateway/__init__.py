"""``aarm-pdp mcp-gateway``: a Model Context Protocol proxy that asks Decide before every tool call.

The gateway sits between any MCP client and one or more upstream MCP servers (stdio or
streamable HTTP). It lists the upstream tools namespaced ``<server>.<tool>`` and
intercepts every ``tools/call``: it asks the decision service (over gRPC, as an
enforcement point with its own credential; it never imports the engine), forwards
ALLOW and MODIFY (with the new arguments), answers DENY and DEFER as MCP tool errors
carrying the reasons, holds STEP_UP until an approver resolves it or the wait times
out, and reports each forwarded call's outcome.

Modules (private but for what this docstring names):

- :mod:`.config`: :class:`GatewayConfig` from a JSON file, validated all at once;
- :mod:`.naming` (pure): server and tool names to catalogue names;
- :mod:`.verdicts` (pure): a Decide answer to an MCP result, a tool result to an outcome;
- :mod:`.enforcer`: the :class:`~.enforcer.Enforcer` port and its gRPC implementation;
- :mod:`.upstream`: connections to the upstream servers;
- :mod:`.proxy`: the MCP server the clients talk to, one AARM session per client session;
- :mod:`.draft` (pure): a draft overlay catalogue from upstream tool schemas and hints.
"""
