"""The parts of ``kie-async mcp`` that guard spending: server limits, quotes, the spending store, argument checks.

The tools themselves are built by :func:`kie_async.interfaces.mcp_server.build_server`.
"""
