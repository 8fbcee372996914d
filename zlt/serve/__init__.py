"""The agent interface: an HTTP API (`zlt serve`) and an MCP server (`zlt mcp`) over the library functions
the CLI calls (`zlt.spec`, `zlt.render`, `zlt.jobs`, `zlt.artifacts`). Nothing here implements job logic.

Importing this package is light; FastAPI, uvicorn and the MCP SDK are imported by the modules that need them.
"""
