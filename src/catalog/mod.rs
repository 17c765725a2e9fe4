//! The catalog of schools: its SQL ([`store`]), naming rules ([`naming`]) and the
//! in-memory snapshot the data path reads.

pub mod naming;
pub mod snapshot;
pub mod store;
