-- POST /introspect (RFC 7662) of one access token, the caller
-- authenticating with client_secret_post.
-- Environment: CLIENT_ID, CLIENT_SECRET, TOKEN, INTROSPECT_PATH (default
-- /introspect; oidc-provider uses /token/introspection).
local id = os.getenv("CLIENT_ID") or error("CLIENT_ID not set")
local secret = os.getenv("CLIENT_SECRET") or error("CLIENT_SECRET not set")
local token = os.getenv("TOKEN") or error("TOKEN not set")
wrk.method = "POST"
wrk.path = os.getenv("INTROSPECT_PATH") or "/introspect"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=" .. token .. "&client_id=" .. id .. "&client_secret=" .. secret
