//! Schools as tenants: the catalog's SQL ([`store`]), naming rules ([`naming`]), the
//! in-memory [`snapshot`] the data path reads, and the creation and migration of each
//! school's database ([`provision`], [`migrate`]).

pub mod migrate;
pub mod naming;
pub mod provision;
pub mod snapshot;
pub mod store;

#[cfg(test)]
pub(crate) mod scratch;
