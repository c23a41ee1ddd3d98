//! The patterns of names the schemas check (and validation, for the command line).

/// Pattern of a JavaScript identifier (Durable Object class, binding name).
pub const JS_IDENTIFIER: &str = r"^[A-Za-z_$][A-Za-z0-9_$]*$";
/// Pattern of an environment variable name.
pub const ENV_NAME: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// Pattern of a Cloudflare application name.
pub const APPLICATION_NAME: &str = r"^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$";
/// Pattern of a Worker script name.
pub const SCRIPT_NAME: &str = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$";
/// Pattern of an image tag.
pub const TAG: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";
