-- Argo CD health check for deploy.mlops.dev/ModelPromotion.
--
-- One generation of the spec is one promotion run. The operator records the run
-- in status: phase, observedGeneration (the generation the run is for) and a
-- Ready condition whose reason and message say why the promotion is (not) Ready.
--
-- Argo CD runs this without Lua's standard libraries (only base and table), so
-- it calls no string.* functions.
local hs = {}

local function present(value)
  return type(value) == "string" and value ~= ""
end

local function withReason(reason, message)
  if present(reason) then
    return reason .. ": " .. message
  end
  return message
end

local status = obj.status
local observed = nil
if type(status) == "table" then
  observed = status.observedGeneration
end
if type(observed) ~= "number" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the run"
  return hs
end

local generation = nil
if type(obj.metadata) == "table" then
  generation = obj.metadata.generation
end
if type(generation) == "number" and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the run for generation " .. generation
    .. " (status is for generation " .. observed .. ")"
  return hs
end

local ready = {}
if type(status.conditions) == "table" then
  for _, condition in ipairs(status.conditions) do
    if type(condition) == "table" and condition.type == "Ready" then
      ready = condition
      break
    end
  end
end

local phase = status.phase
local reason = ready.reason
local message = ready.message
-- Without a Ready message, the error the run recorded says what is going on.
if not present(message) then
  local detail = status.lastError
  if phase == "Failed" or phase == "RolledBack" or phase == "Aborted" then
    detail = status.outcome
  end
  if type(detail) == "table" and present(detail.message) then
    message = detail.message
    if present(detail.reason) then
      reason = detail.reason
    end
  end
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  if present(message) then
    hs.message = message
  else
    hs.message = "Promoted"
  end
  return hs
end

-- A canary's pause without a duration waits for a person (Ready reason
-- AwaitingResume); without a Ready reason, a pause with no end time says the same.
local awaitingResume = false
if phase == "Paused" then
  if present(ready.reason) then
    awaitingResume = ready.reason == "AwaitingResume"
  else
    awaitingResume = type(status.canary) == "table" and status.canary.pauseUntil == nil
  end
end

-- "-n NAMESPACE " and the name, for the kubectl commands in messages.
local name = "NAME"
local where = ""
if type(obj.metadata) == "table" then
  if present(obj.metadata.name) then
    name = obj.metadata.name
  end
  if present(obj.metadata.namespace) then
    where = "-n " .. obj.metadata.namespace .. " "
  end
end

if awaitingResume then
  hs.status = "Suspended"
  if present(ready.message) then
    -- The operator's message says how to resume.
    hs.message = ready.message
  else
    hs.message = "Paused until a person resumes the canary: kubectl " .. where
      .. "annotate mp " .. name .. " deploy.mlops.dev/resume=true"
  end
  return hs
end

-- Validated, waiting for a person to approve (spec.approval.required).
if phase == "AwaitingApproval" then
  hs.status = "Suspended"
  if present(ready.message) then
    -- The operator's message names who may approve and how.
    hs.message = ready.message
  else
    hs.message = "Waiting for approval: kubectl " .. where .. "promotion approve " .. name
      .. ", or kubectl " .. where .. "annotate mp " .. name
      .. " deploy.mlops.dev/approve=<your user name>"
  end
  return hs
end

-- Validated, its first write held by a PromotionPolicy: outside the promotion windows
-- (until the next allowed time the message gives) or frozen (until the freeze is lifted).
if phase == "AwaitingWindow" then
  hs.status = "Suspended"
  if present(ready.message) then
    hs.message = withReason(reason, ready.message)
  else
    hs.message = "Waiting for a promotion window, or for a freeze to be lifted"
  end
  return hs
end

-- Working: a canary's analysis or timed pause, and a bake (spec.bake: the promotion
-- is written and watched a while before it succeeds, or is rolled back) among them.
if phase == "Pending" or phase == "Validating" or phase == "Promoting"
    or phase == "Verifying" or phase == "Analyzing" or phase == "Paused"
    or phase == "Baking" or phase == "RollingBack" then
  hs.status = "Progressing"
  if present(message) then
    hs.message = withReason(reason, message)
  else
    hs.message = withReason(reason, "The promotion run is " .. phase)
  end
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  if present(message) then
    hs.message = message
  else
    hs.message = "Suspended before the first write; set spec.suspend=false to continue"
  end
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  if present(message) then
    hs.message = withReason(reason, message)
  else
    hs.message = withReason(reason, "The promotion run failed")
  end
  return hs
end

-- Stopped on request before anything was written (a run aborted after a write is
-- rolled back, and ends RolledBack).
if phase == "Aborted" then
  hs.status = "Degraded"
  if present(message) then
    hs.message = message
  else
    hs.message = "The promotion run was aborted"
  end
  return hs
end

if phase == "RolledBack" then
  hs.status = "Degraded"
  if present(ready.message) then
    -- The operator's message names the cause: "rolled back <target> (...) after <reason>: ..."
    hs.message = ready.message
  elseif present(message) then
    hs.message = "Rolled back after " .. withReason(reason, message)
  else
    hs.message = "The promotion run was rolled back"
  end
  return hs
end

if phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the run"
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
