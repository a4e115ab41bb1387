-- GET /api/{user}/tasks/{task_id}, a random seeded task of that user
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.install(function(user)
  return "GET", "/api/" .. user.id .. "/tasks/" .. common.task_id(user), nil
end)
