//! The LuaLS / LuaCATS annotation files (`---@meta`) of the top-level
//! `lua/types/` folder, compiled into the binary so `rollbridge lua-types` can
//! write them out wherever rollbridge is installed. tests/hooks/lua_types.rs keeps
//! them in step with the config keys, `ctx` and the library.

use std::path::{Path, PathBuf};

/// `(file name, contents)`. Add a file to `lua/types/` and list it here.
pub const FILES: &[(&str, &str)] = &[
    ("config.lua", include_str!("../../lua/types/config.lua")),
    ("ctx.lua", include_str!("../../lua/types/ctx.lua")),
    (
        "rollbridge.lua",
        include_str!("../../lua/types/rollbridge.lua"),
    ),
    (
        "rollbridge.options.lua",
        include_str!("../../lua/types/rollbridge.options.lua"),
    ),
    (
        "rollbridge.hooks.lua",
        include_str!("../../lua/types/rollbridge.hooks.lua"),
    ),
    (
        "rollbridge.workers.lua",
        include_str!("../../lua/types/rollbridge.workers.lua"),
    ),
    (
        "rollbridge.match.lua",
        include_str!("../../lua/types/rollbridge.match.lua"),
    ),
];

/// Writes every annotation file into `dir` (created when missing), replacing
/// older copies; returns the paths written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    FILES
        .iter()
        .map(|(name, contents)| {
            let path = dir.join(name);
            std::fs::write(&path, contents)?;
            Ok(path)
        })
        .collect()
}
