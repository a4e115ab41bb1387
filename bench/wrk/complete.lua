-- PATCH /api/{user}/tasks/{task_id}/complete without a body (toggles completion)
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.install(function(user)
  return "PATCH", "/api/" .. user.id .. "/tasks/" .. common.task_id(user) .. "/complete", nil
end)
