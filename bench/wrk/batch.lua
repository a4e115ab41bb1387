-- POST /api/{user}/tasks/batch: 100 creates, each with create.lua's body
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")

local task = '{"title": "Benchmark task", "priority": "high", "description": "made by wrk"}'
local operations = {}
for i = 1, 100 do
  operations[i] = '{"op": "create", "task": ' .. task .. '}'
end
local body = '{"atomic": false, "operations": [' .. table.concat(operations, ", ") .. ']}'

common.install(function(user)
  return "POST", "/api/" .. user.id .. "/tasks/batch", body
end)
