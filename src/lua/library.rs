//! The Lua library shipped inside the binary, so `require("rollbridge")` works
//! wherever rollbridge is installed. The sources live in the top-level `lua/`
//! folder; add a module there and list it here.

/// `(module name, source)`. Module `rollbridge.x` lives in `lua/rollbridge/x.lua`.
const MODULES: &[(&str, &str)] = &[
    ("rollbridge", include_str!("../../lua/rollbridge/init.lua")),
    (
        "rollbridge.options",
        include_str!("../../lua/rollbridge/options.lua"),
    ),
    (
        "rollbridge.hooks",
        include_str!("../../lua/rollbridge/hooks.lua"),
    ),
    (
        "rollbridge.workers",
        include_str!("../../lua/rollbridge/workers.lua"),
    ),
    (
        "rollbridge.match",
        include_str!("../../lua/rollbridge/match.lua"),
    ),
];

/// The source of an embedded module and the chunk name to load it under.
pub fn find(name: &str) -> Option<(String, &'static str)> {
    MODULES
        .iter()
        .find(|(module, _)| *module == name)
        .map(|(module, source)| (chunk_name(module), *source))
}

/// Whether `name` belongs to the reserved `rollbridge` namespace.
pub fn is_reserved(name: &str) -> bool {
    name == "rollbridge" || name.starts_with("rollbridge.")
}

/// Names of all embedded modules.
pub fn module_names() -> impl Iterator<Item = &'static str> {
    MODULES.iter().map(|(name, _)| *name)
}

fn chunk_name(module: &str) -> String {
    let file = if module == "rollbridge" {
        "rollbridge/init.lua".to_string()
    } else {
        format!("{}.lua", module.replace('.', "/"))
    };
    format!("@[builtin]/{file}")
}
