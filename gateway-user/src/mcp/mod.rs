//! MCP gateway: one endpoint multiplexing stdio, SSE and streamable-HTTP targets.
//!
//! Placeholder API until the MCP subsystem lands: every request is answered with a JSON-RPC
//! error saying MCP is not available in this build.

use std::sync::Arc;

use crate::body::Body;
use crate::config::mcp::{RawMcpAuthorization, RawMcpBackend};
use crate::ctx::RequestLog;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("{0}")]
    Config(String),
}

pub struct McpBackend {
    _name: String,
}

impl McpBackend {
    pub fn new(
        name: &str,
        _raw: &RawMcpBackend,
        _authz: Option<&RawMcpAuthorization>,
        _yaml_path: &str,
    ) -> Result<Arc<McpBackend>, McpError> {
        Ok(Arc::new(McpBackend {
            _name: name.to_owned(),
        }))
    }

    pub async fn serve(
        &self,
        _req: http::Request<hyper::body::Incoming>,
        _log: &mut RequestLog,
    ) -> http::Response<Body> {
        let mut resp = http::Response::new(crate::body::json(&serde_json::json!({
            "jsonrpc": "2.0", "id": null,
            "error": {"code": -32603, "message": "MCP is not available in this build"}
        })));
        *resp.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
        resp
    }

    pub async fn shutdown(&self) {}
}
