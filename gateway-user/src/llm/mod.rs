//! LLM providers: request/response formats, translation between them, and stream parsing.
