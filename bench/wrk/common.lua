-- Shared by the scenario scripts (list.lua, get.lua, create.lua, complete.lua).
--
-- Script arguments (after wrk's `--`): TOKENS_FILE TASKS_FILE
--   TOKENS_FILE  Lua chunk returning { ["user0000"] = "<jwt>", ... } (bench/run.py mints it)
--   TASKS_FILE   Lua chunk returning { {"user0000", {"<task id>", ...}}, ... } (bench/seed.py)
--
-- Every request goes to the next user in turn (each thread starting at its own
-- random offset), with that user's bearer token and, where the path needs one,
-- a random task id of that user.
local M = {}

local users = {}
local cursor = 0
local counter = 0

function M.install(build)
  -- build(user) returns method, path, body for one request of the scenario.
  function setup(thread)
    counter = counter + 1
    thread:set("thread_number", counter)
  end

  function init(args)
    local tokens = dofile(args[1])
    for _, entry in ipairs(dofile(args[2])) do
      local id, task_ids = entry[1], entry[2]
      local token = tokens[id]
      if token then
        users[#users + 1] = {
          id = id,
          tasks = task_ids,
          headers = { ["Authorization"] = "Bearer " .. token },
          json_headers = {
            ["Authorization"] = "Bearer " .. token,
            ["Content-Type"] = "application/json",
          },
        }
      end
    end
    if #users == 0 then
      error("no user has both a token and task ids")
    end
    math.randomseed(os.time() * 1000 + (thread_number or 0))
    cursor = math.random(#users)
  end

  function request()
    cursor = cursor % #users + 1
    local user = users[cursor]
    local method, path, body = build(user)
    return wrk.format(method, path, body and user.json_headers or user.headers, body)
  end
end

function M.task_id(user)
  return user.tasks[math.random(#user.tasks)]
end

return M
