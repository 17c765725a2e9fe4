//! The school-lunch API's own types: dates and the JSON wire forms of API.md.
//!
//! Pure data and validation; nothing here does I/O, talks to a database or knows HTTP
//! status codes (the single error-to-response mapping lives with the server).

pub mod date;
pub mod handlers;
pub mod json;
pub mod model;
pub mod queries;
