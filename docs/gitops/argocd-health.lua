-- Argo CD health check for every CloudKit kind (cloudkit.dev/*). It judges as kstatus does
-- (Flux, Helm 4, kpt), so every GitOps tool agrees on an object:
--   deleting, no status yet, or status for an older generation -> Progressing
--   Stalled=True (a human must act)                            -> Degraded
--   Reconciling=True (creating, waiting, retrying)             -> Progressing
--   Ready=True                                                 -> Healthy
-- The condition's message is passed through, so the UI says what to change.
local hs = { status = "Progressing", message = "waiting for the CloudKit controller" }

local function condition(conditions, type_)
  for _, c in ipairs(conditions or {}) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function say(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if c ~= nil and c.reason ~= nil then
    return c.reason
  end
  return fallback
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.message = "being deleted"
  return hs
end
local status = obj.status
if status == nil or status.observedGeneration == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.message = "the controller has not applied generation " .. tostring(obj.metadata.generation) .. " yet"
  return hs
end
local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(stalled, "stalled")
  return hs
end
local reconciling = condition(status.conditions, "Reconciling")
local ready = condition(status.conditions, "Ready")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = say(ready, say(reconciling, "reconciling"))
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = say(ready, "Ready")
  return hs
end
hs.message = say(ready, "not Ready yet")
return hs
