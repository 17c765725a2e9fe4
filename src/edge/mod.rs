//! The HTTP side of the data path: the threads that serve it ([`workers`]), the one accept
//! loop every listener uses ([`server`]), one request start to finish ([`service`]), the
//! single error-to-response mapping ([`error`]), and the edge pieces around them (CORS,
//! request ids, the static front end).

pub mod cors;
pub mod error;
pub mod keep_alive;
pub mod request_id;
pub mod server;
pub mod service;
pub mod static_files;
pub mod workers;
