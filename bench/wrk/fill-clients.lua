-- POST /api/admin/clients until COUNT clients were created (split across
-- wrk's threads), to measure memory with many clients registered.
-- Environment: COUNT, COOKIE ("name=value" of the admin session), CSRF.
local count = tonumber(os.getenv("COUNT") or "0")
local nthreads = tonumber(os.getenv("FILL_THREADS") or "1")
local cookie = os.getenv("COOKIE") or error("COOKIE not set")
local csrf = os.getenv("CSRF") or error("CSRF not set")
wrk.method = "POST"
wrk.path = "/api/admin/clients"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = cookie
wrk.headers["X-CSRF-Token"] = csrf
wrk.body = '{"client_name":"fill","client_type":"confidential",'
    .. '"token_endpoint_auth_method":"client_secret_post","scope":"read write"}'

local per, done = 0, 0
function init(args)
    per = math.ceil(count / nthreads)
end
function response(status, headers, body)
    if status == 201 then done = done + 1 end
    if done >= per then wrk.thread:stop() end
end
