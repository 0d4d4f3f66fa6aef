-- wrk script: every request starts a complaint case (POST /instances), as a CRM would.
-- Used by scripts/bench-http.sh; the token is the development service token of caseflow.toml.
wrk.method = "POST"
wrk.path = "/instances"
wrk.headers["Authorization"] = "Bearer dev-crm"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"high"}}'

-- Any answer but 201 counts as an error in the summary.
local failures = 0
response = function(status, headers, body)
  if status ~= 201 then
    failures = failures + 1
    if failures <= 3 then io.stderr:write("unexpected " .. status .. ": " .. body .. "\n") end
  end
end
