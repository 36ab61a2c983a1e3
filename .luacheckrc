-- luacheck configuration for spm's Lua (phases, policies, scripts, specs).
-- The standard below mirrors the sandbox of src/host/sandbox.rs: the base library without
-- file loading, table/string/math/utf8, the clock functions of os, and the `spm` global.
-- No io, debug, coroutine or package.
stds.spm_sandbox = {
  read_globals = {
    "_G",
    "_VERSION",
    "assert",
    "collectgarbage",
    "error",
    "getmetatable",
    "ipairs",
    "load",
    "next",
    "pairs",
    "pcall",
    "print",
    "rawequal",
    "rawget",
    "rawlen",
    "rawset",
    "require",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "xpcall",
    "spm",
    math = { other_fields = true },
    table = { other_fields = true },
    utf8 = { other_fields = true },
    string = { other_fields = true },
    os = { fields = { "time", "clock", "date", "difftime" } },
  },
}
std = "spm_sandbox"
max_line_length = 120
exclude_files = {
  "tests/fixtures/lua/bad/*.lua", -- deliberately broken fixtures
  "scripts/types/*.lua", -- generated LuaLS definitions
  "target/**",
}
