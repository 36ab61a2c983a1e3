-- luacheck configuration for spm's Lua (phases, policies, scripts, specs).
std = "lua54"
read_globals = { "spm" }
max_line_length = 120
exclude_files = {
  "tests/fixtures/lua/bad/*.lua", -- deliberately broken fixtures
  "scripts/types/*.lua", -- generated LuaLS definitions
  "target/**",
}
