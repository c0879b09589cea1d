-- wrk script: POST the JSON body named by the BODY_FILE environment variable.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open(os.getenv("BODY_FILE"), "r")
wrk.body = file:read("*a")
file:close()
