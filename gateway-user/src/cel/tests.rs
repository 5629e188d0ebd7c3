//! CEL table tests.
