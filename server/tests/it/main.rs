//! Integration tests: the real server on a free port, talked to by the real Socket.IO client and over HTTP.

mod chat;
mod helpers;
mod pages;
