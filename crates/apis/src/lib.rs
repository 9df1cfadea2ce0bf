//! Wire types shared by the server, the SDK and `climc`.
//!
//! Everything here is plain data plus the parsing rules of the Cloudpods wire
//! format (query strings, filters, lenient field names), and the signature
//! on region → agent requests. No I/O.

pub mod agent_auth;
pub mod compute;
pub mod error;
pub mod filter;
pub mod identity;
pub mod image;
pub mod lenient;
pub mod livemigrate;
pub mod querystring;
pub mod scheduler;
pub mod time;

pub use error::{ErrorBody, ErrorClass};
