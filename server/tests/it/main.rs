//! Integration tests: the real server on a free port, talked to by the real Socket.IO client and over HTTP.

// Test helpers are test code: a failed unwrap fails the test with the value in its message.
#![allow(clippy::unwrap_used)]

mod admin;
mod attack;
mod chat;
mod helpers;
mod history;
mod images;
mod js_client;
mod limits;
mod pages;
mod presence;
