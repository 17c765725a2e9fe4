//! The HTTP side of the data path.
//!
//! So far only the pure router; the server, responses and error mapping join it here.

pub mod router;
