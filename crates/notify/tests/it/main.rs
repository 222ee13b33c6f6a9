//! Integration tests of intake-notify: every sender against a real receiver on a loopback
//! port (HTTP capture servers, an SMTP capture server with STARTTLS), asserting the exact
//! shapes sent and the classification of failures.

mod capture;
mod email;
mod errors;
mod fixtures;
mod http_notifiers;
mod smtp;
