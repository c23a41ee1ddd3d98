-- Argo CD health check for flaredock.dev/CloudflareContainer and CloudflareWorker
-- (kstatus conditions). Lua 5.1, as Argo CD's gopher-lua runs it. Install it as
-- resource.customizations.health.flaredock.dev_<Kind> in argocd-cm for both kinds
-- (argocd-cm-patch.yaml next to this file), or from resource_customizations/ (Argo CD's
-- upstream layout, with health_test.yaml and testdata/).
-- This file is the one source. Argo CD's layout needs a health.lua in each kind's
-- directory, so resource_customizations/flaredock.dev/<Kind>/health.lua are copies, as is
-- the script in argocd-cm-patch.yaml; tests/deploy.rs
-- (the_argocd_health_checks_pass_their_upstream_tests) fails unless each is identical.
local hs = {}
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: flaredock makes no change at Cloudflare"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for flaredock to report a status"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for flaredock to observe the latest spec"
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Stalled" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = c.message
    return hs
  end
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    if c.status ~= "True" and (c.reason == "AdoptionPending" or c.reason == "Observing") then
      -- Waiting for a person: an adoption to approve, or managementPolicy Observe
      -- with differences. flaredock writes nothing until then.
      hs.status = "Suspended"
      hs.message = c.message
      return hs
    end
    if c.status == "True" then
      hs.status = "Healthy"
      hs.message = c.message
    else
      hs.status = "Progressing"
      hs.message = c.message
      local r = obj.status.rollout
      if r ~= nil and r.status == "progressing" and r.progress ~= nil then
        hs.message = "rollout " .. tostring(r.progress) .. "%: " .. tostring(c.message)
      end
    end
    return hs
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
