//! Causerie's server: configuration, the Socket.IO handlers, and the application that serves them with the
//! Leptos pages. `main.rs` only parses the configuration and runs [`startup::Application`].

pub mod config;
pub mod limits;
pub mod media;
pub mod presence;
pub mod realtime;
pub mod session;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::Application;
