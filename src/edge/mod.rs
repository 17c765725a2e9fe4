//! The HTTP side of the data path: the threads that serve it ([`workers`]), the one accept
//! loop every listener uses ([`server`]), one request start to finish ([`service`]), the
//! single error-to-response mapping ([`error`]) that every listener's failures go through,
//! and the edge pieces around them (CORS, request ids, entity tags, hex digits, the static
//! front end).

pub mod cors;
pub mod error;
pub mod etag;
pub mod h2_idle;
pub mod hex;
pub mod keep_alive;
pub mod request_id;
pub mod server;
pub mod service;
pub mod static_files;
pub mod workers;
