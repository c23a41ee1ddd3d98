//! The Cloudflare API boundary: wire types ([`types`]), typed errors ([`error`]), the
//! per-token rate limiter ([`limiter`]), the leadership write gate ([`gate`]), secrets
//! that never print ([`token`]) and the client itself ([`client`]), with what adoption
//! reads of a script ([`script_download`], [`multipart`]) and reachability
//! ([`routing`]).

pub mod client;
pub mod error;
pub mod gate;
pub mod limiter;
pub mod multipart;
pub mod routing;
pub mod script_download;
pub mod token;
pub mod types;

pub use client::{
    CLOUDFLARE_REGISTRY, CallStats, ClientConfig, CloudflareClient, DEFAULT_BASE_URL,
};
pub use error::ApiError;
pub use gate::WriteGate;
pub use limiter::{Limiters, RateLimit, RateLimiter, parse_policy};
pub use token::{ApiToken, Secret};
