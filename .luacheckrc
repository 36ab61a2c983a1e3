-- luacheck configuration for phases/, scripts/ and policies/.
std = "lua54"
-- The one global the spm host provides.
read_globals = { "spm" }
max_line_length = 120
exclude_files = { "scripts/types/*.meta.lua" }
