//! The pure types every other module shares: calendar dates ([`date`]), school slugs and
//! database names ([`names`]) and a school's catalog status ([`status`]). No I/O, no
//! dependency on any other module of the crate.

pub mod date;
pub mod names;
pub mod status;
