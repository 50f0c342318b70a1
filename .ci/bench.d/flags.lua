-- wrk script for the flag benchmark: every request is for another user, as real traffic is.
-- The requests are built once per thread (1000 contexts) and then cycled, so wrk spends no
-- more per request than a Lua call; the bare handler is driven by the same script (its answer
-- stays constant) so that the two sides pay the same client cost.
--
-- Usage: wrk ... -s flags.lua URL -- MODE [TOKEN]
--   MODE bare:     GET /?userId=...&appName=...                     (the constant handler)
--   MODE healthz:  GET /healthz?userId=...&appName=... with the token (Flightdeck's own floor:
--                  every layer, the token looked up, a constant answer)
--   MODE frontend: GET /api/frontend?userId=...&appName=...&properties[...]=...  (Unleash)
--   MODE ofrep:    POST /ofrep/v1/evaluate/flags {"context":{"targetingKey":...}}
--   MODE junk:     as frontend, but every request with another unknown token: half shaped like
--                  the SDK token given (same project and environment, another secret), half
--                  random text (refused with 401)
local requests = {}
local next_request = 1

local apps = { "web", "ios", "android" }
local versions = { "2.1.0", "2.3.0", "2.4.1", "3.0.0-beta.2" }
local plans = { "free", "free", "pro", "team" }
local countries = { "DE", "US", "FR", "GB", "IN", "BR" }
local domains = { "gmail.com", "school.edu", "studybuddy.app", "uni.ac.uk" }

local function context(i)
  return {
    user = "u" .. i,
    session = "s" .. (i * 7919 % 100000),
    app = apps[i % #apps + 1],
    version = versions[i % #versions + 1],
    plan = plans[math.floor(i / 3) % #plans + 1],
    country = countries[math.floor(i / 5) % #countries + 1],
    email = "student" .. i .. "@" .. domains[math.floor(i / 2) % #domains + 1],
    lessons = (i * 37) % 120,
  }
end

local threads = 0
function setup(thread)
  thread:set("offset", threads * 1000)
  threads = threads + 1
end

-- A random secret of `length` characters from the URL-safe base64 alphabet.
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function random_secret(length)
  local chars = {}
  for i = 1, length do
    local k = math.random(#alphabet)
    chars[i] = alphabet:sub(k, k)
  end
  return table.concat(chars)
end

function init(args)
  local mode, token = args[1], args[2]
  local headers = { ["Authorization"] = token }
  math.randomseed(offset + 1)
  -- Each thread has its own users (`offset` is set by setup).
  for n = 1, 1000 do
    local c = context(offset + n)
    if mode == "junk" then
      local scope = (token or ""):match("^([^.]*)%.") or "studybuddy:staging"
      headers = { ["Authorization"] = (n % 2 == 0) and (scope .. "." .. random_secret(43)) or random_secret(32) }
    end
    if mode == "bare" then
      requests[n] = wrk.format("GET", "/?userId=" .. c.user .. "&appName=" .. c.app, {})
    elseif mode == "healthz" then
      requests[n] = wrk.format("GET", "/healthz?userId=" .. c.user .. "&appName=" .. c.app, headers)
    elseif mode == "frontend" or mode == "junk" then
      local path = "/api/frontend?userId=" .. c.user .. "&sessionId=" .. c.session .. "&appName=" .. c.app
        .. "&properties%5BappVersion%5D=" .. c.version .. "&properties%5Bplan%5D=" .. c.plan
        .. "&properties%5Bcountry%5D=" .. c.country .. "&properties%5Bemail%5D=" .. c.email
        .. "&properties%5BlessonsCompleted%5D=" .. c.lessons
      requests[n] = wrk.format("GET", path, headers)
    elseif mode == "ofrep" then
      headers["Content-Type"] = "application/json"
      local body = string.format(
        '{"context":{"targetingKey":"%s","sessionId":"%s","appName":"%s","appVersion":"%s",'
          .. '"plan":"%s","country":"%s","email":"%s","lessonsCompleted":%d}}',
        c.user, c.session, c.app, c.version, c.plan, c.country, c.email, c.lessons)
      requests[n] = wrk.format("POST", "/ofrep/v1/evaluate/flags", headers, body)
    else
      error("unknown mode " .. tostring(mode))
    end
  end
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end
