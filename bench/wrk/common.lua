-- Shared by the scenario scripts (list.lua, get.lua, create.lua, complete.lua).
--
-- Script arguments (after wrk's `--`): TOKENS_FILE TASKS_FILE [MEAN_GAP_MS]
--   TOKENS_FILE  Lua chunk returning { ["user0000"] = "<jwt>", ... } (bench/run.py mints it)
--   TASKS_FILE   Lua chunk returning { {"user0000", {"<task id>", ...}}, ... } (bench/seed.py)
--   MEAN_GAP_MS  paced load: each thread's requests are sent at the times of
--                a Poisson stream with this mean gap (a thread offers
--                1000 / MEAN_GAP_MS requests/s whatever the answers take);
--                a connection that is free picks the next time. wrk's
--                latency starts when the request is sent.
--
-- Every request goes to the next user in turn (each thread starting at its own
-- random offset), with that user's bearer token and, where the path needs one,
-- a random task id of that user.
local M = {}

local users = {}
local cursor = 0
local counter = 0
local next_send_ms = nil

-- Plain Lua has no wall clock finer than a second; wrk runs on LuaJIT, whose FFI reaches libc's.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

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
    local mean_gap_ms = tonumber(args[3])
    if mean_gap_ms then
      -- wrk only calls delay() when the script defines it, so an unpaced run
      -- keeps the closed loop it always had.
      function delay()
        local now = now_ms()
        next_send_ms = (next_send_ms or now) - mean_gap_ms * math.log(1 - math.random())
        return math.max(0, math.floor(next_send_ms - now + 0.5))
      end
    end
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
