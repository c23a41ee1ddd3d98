//! OCI images: references ([`reference`](mod@reference)) and the registry client ([`client`]).

pub mod bundle;
pub mod client;
pub mod copy;
pub mod layout;
pub mod reference;

pub use client::{Credentials, RegistryClient, RegistryError};
pub use reference::{Reference, ReferenceError};
