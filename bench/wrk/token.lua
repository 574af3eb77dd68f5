-- POST /token: client_credentials with client_secret_post, or with
-- client_secret_basic when TOKEN_BASIC is set (base64 of "id:secret").
-- Environment: CLIENT_ID, CLIENT_SECRET, TOKEN_EXTRA (optional, appended
-- to the form as is, e.g. "&resource=urn%3Abench%3Aapi"). Values must
-- already be form-safe (base64url secrets are).
local id = os.getenv("CLIENT_ID") or error("CLIENT_ID not set")
local secret = os.getenv("CLIENT_SECRET") or error("CLIENT_SECRET not set")
wrk.method = "POST"
wrk.path = os.getenv("TOKEN_PATH") or "/token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local basic = os.getenv("TOKEN_BASIC")
if basic and basic ~= "" then
    wrk.headers["Authorization"] = "Basic " .. basic
    wrk.body = "grant_type=client_credentials" .. (os.getenv("TOKEN_EXTRA") or "")
else
    wrk.body = "grant_type=client_credentials&client_id=" .. id .. "&client_secret=" .. secret
        .. (os.getenv("TOKEN_EXTRA") or "")
end
