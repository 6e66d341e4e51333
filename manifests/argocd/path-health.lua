-- Argo CD health check for deploy.mlops.dev/PromotionPath.
--
-- The operator records each stage in status.stages: its phase (Idle, Soaking,
-- WaitingForPromotion, Held, Blocked, Running, Succeeded, Failed), the freight it works
-- on and a message. A path is Degraded while a stage has Failed or is Blocked (the path
-- stops there), Suspended while a manual stage waits for a person or a person holds a
-- stage, Progressing while a stage runs or soaks, and Healthy otherwise. The stage runs are ModelPromotions the
-- path owns; their own health check applies to them.
--
-- Argo CD runs this without Lua's standard libraries (only base and table).
local hs = {}

local status = obj.status
local observed = nil
if type(status) == "table" then
  observed = status.observedGeneration
end
local generation = nil
if type(obj.metadata) == "table" then
  generation = obj.metadata.generation
end
if type(observed) ~= "number" or (type(generation) == "number" and observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to read the path"
  return hs
end

local function describe(stage)
  local text = "stage " .. tostring(stage.name) .. " " .. tostring(stage.phase)
  if type(stage.message) == "string" and stage.message ~= "" then
    text = text .. ": " .. stage.message
  end
  return text
end

local rank = {
  Failed = 4, Blocked = 4, WaitingForPromotion = 3, Held = 3, Running = 2, Soaking = 2
}
local verdict = {[4] = "Degraded", [3] = "Suspended", [2] = "Progressing"}
local worst = nil
local worstRank = 0
if type(status.stages) == "table" then
  for _, stage in ipairs(status.stages) do
    if type(stage) == "table" then
      local r = rank[stage.phase] or 0
      if r > worstRank then
        worst = stage
        worstRank = r
      end
    end
  end
end

if worst ~= nil then
  hs.status = verdict[worstRank]
  hs.message = describe(worst)
  return hs
end
hs.status = "Healthy"
hs.message = "Every stage carries the newest freight that passed it"
return hs
