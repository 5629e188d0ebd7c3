//! MCP gateway: one endpoint multiplexing stdio, SSE and streamable-HTTP targets.
