-- POST /token: client_credentials with client_secret_post.
-- Environment: CLIENT_ID, CLIENT_SECRET, TOKEN_EXTRA (optional, appended
-- to the form as is, e.g. "&resource=urn%3Abench%3Aapi"). Values must
-- already be form-safe (base64url secrets are).
local id = os.getenv("CLIENT_ID") or error("CLIENT_ID not set")
local secret = os.getenv("CLIENT_SECRET") or error("CLIENT_SECRET not set")
wrk.method = "POST"
wrk.path = os.getenv("TOKEN_PATH") or "/token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&client_id=" .. id .. "&client_secret=" .. secret
    .. (os.getenv("TOKEN_EXTRA") or "")
