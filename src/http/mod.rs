//! The HTTP side of the data path.
//!
//! So far the pure router and the edge pieces around it (CORS, request ids, the static
//! front end); the server, responses and error mapping join them here.

pub mod cors;
pub mod request_id;
pub mod router;
pub mod static_files;
