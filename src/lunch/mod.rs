//! The school-lunch API of API.md: its path grammar ([`router`]), wire types and body
//! validation ([`model`]), the SQL ([`queries`]), the endpoints ([`handlers`], which
//! return their own [`handlers::LunchError`]) and the hand-written response bodies
//! ([`json`]).
//!
//! Nothing here knows HTTP status codes or the server: the edge maps every error to a
//! response in one place. Handlers reach a database only through the one school
//! connection the edge hands them.

pub mod handlers;
pub mod json;
pub mod menu_cache;
pub mod model;
pub mod queries;
pub mod router;
