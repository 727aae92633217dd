//! The daemon's own environment, read without ever panicking on bytes that are
//! not UTF-8 (`std::env::vars` would).
//!
//! Managed processes inherit the environment as the operating system gives it,
//! bytes and all. Only the places that need text — `{{env.NAME}}` templates and
//! what hooks see as the process environment — use [`utf8_vars`], which leaves
//! such variables out; the daemon reports each one once at startup
//! ([`non_utf8_names`]).

/// Every variable whose name and value are valid UTF-8, in the environment's order.
pub fn utf8_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
}

/// The names (lossily decoded) of the variables [`utf8_vars`] leaves out.
pub fn non_utf8_names() -> Vec<String> {
    std::env::vars_os()
        .filter(|(name, value)| name.to_str().is_none() || value.to_str().is_none())
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect()
}
