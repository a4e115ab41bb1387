-- POST /api/{user}/tasks with a small JSON body
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

local body = '{"title": "Benchmark task", "priority": "high", "description": "made by wrk"}'

common.install(function(user)
  return "POST", "/api/" .. user.id .. "/tasks", body
end)
