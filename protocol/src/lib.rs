//! Causerie's wire protocol: the typed Socket.IO events the browser and the server exchange, and the validated
//! domain values they carry.
//!
//! Both sides depend on this crate, so a value that parses in the browser parses identically on the server: a
//! display name rejected by the join form is rejected by the socket handler with the same words.
//!
//! ```
//! use protocol::{DisplayName, RoomName};
//!
//! let name = DisplayName::parse("  Ada Lovelace ").unwrap();
//! assert_eq!(name.as_str(), "Ada Lovelace");
//!
//! let room = RoomName::parse("Rust Lovers!").unwrap();
//! assert_eq!(room.as_str(), "rust-lovers");
//! ```

mod events;
mod image;
mod values;

pub use events::*;
pub use image::*;
pub use values::*;
