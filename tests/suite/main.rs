//! Cross-crate tests, one module per topic (ripgrep's layout).

mod calls;
mod conformance;
mod control;
mod ipv6;
mod malformed;
mod media;
mod pbx;
mod peers;
mod phones;
mod reports;
mod stop;
mod transports;
