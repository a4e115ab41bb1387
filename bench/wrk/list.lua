-- GET /api/{user}/tasks?limit=20 (first page, newest first)
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.install(function(user)
  return "GET", "/api/" .. user.id .. "/tasks?limit=20", nil
end)
