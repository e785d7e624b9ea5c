#!/usr/bin/env bash
# How parleyd serves the web page, seen with curl: the embedded copy at /
# with its content types, security headers (a CSP with no inline script,
# nosniff, no framing) and revalidation (ETag, 304); HEAD; unknown paths;
# then --web-root: a folder served instead, edits seen at once, and every
# way out of the folder refused (.., encoded .., hidden files, a symbolic
# link out, absolute paths), and a --web-root that is no folder stopping
# the start with a message.
source "$(dirname "$0")/../http/http_lib.sh"
web_src="$(cd "$(dirname "$0")/../../web" && pwd)"

# get PATH [curl args...]: status in $status, headers in $work/headers, body in $work/body.
get() {
  local path=$1
  shift
  rm -f "$work/body"  # curl writes no file for an empty body
  touch "$work/body"
  status=$(curl -s --path-as-is -o "$work/body" -D "$work/headers" -w '%{http_code}' "$@" "$http_url$path") || status=000
}
header() { grep -i "^$1:" "$work/headers" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

start_parleyd
wait_http

# --- the embedded page -----------------------------------------------------------------
for f in index.html app.js api.js auth.js dom.js join.js live.js manage.js room.js style.css favicon.svg; do
  [[ -f $web_src/$f ]] || fail "web/$f is missing"
done
get /
[[ $status == 200 ]] || fail "GET / answered $status"
cmp -s "$work/body" "$web_src/index.html" || fail "GET / is not web/index.html"
[[ $(header Content-Type) == "text/html; charset=utf-8" ]] || fail "/ type: $(header Content-Type)"
csp=$(header Content-Security-Policy)
[[ $csp == *"script-src 'self'"* && $csp == *"default-src 'none'"* && $csp == *"frame-ancestors 'none'"* ]] ||
  fail "CSP: $csp"
[[ $csp != *unsafe-inline* && $csp != *unsafe-eval* ]] || fail "CSP allows inline script or eval: $csp"
[[ $(header X-Content-Type-Options) == nosniff ]] || fail "no nosniff: $(cat "$work/headers")"
[[ $(header Cache-Control) == no-cache ]] || fail "Cache-Control: $(header Cache-Control)"
# No inline script or style in the page, no handler attributes.
grep -Eiq '<script>|<script [^>]*>[^<]|<style|[[:space:]]on[a-z]+=' "$work/body" &&
  fail "index.html has inline script, style or handlers"
grep -q '<script type="module" src="/app.js"></script>' "$work/body" || fail "index.html does not load app.js as a module"
ok "GET / is the embedded web/index.html with a CSP allowing no inline script, nosniff, no framing"

declare -A want=([app.js]="text/javascript; charset=utf-8" [style.css]="text/css; charset=utf-8"
  [favicon.svg]="image/svg+xml" [index.html]="text/html; charset=utf-8")
for f in "${!want[@]}"; do
  get "/$f"
  [[ $status == 200 ]] || fail "GET /$f answered $status"
  cmp -s "$work/body" "$web_src/$f" || fail "/$f differs from web/$f"
  [[ $(header Content-Type) == "${want[$f]}" ]] || fail "/$f type: $(header Content-Type)"
  etag=$(header ETag)
  [[ $etag =~ ^\"[0-9a-f]{20}\"$ ]] || fail "/$f ETag: '$etag'"
  get "/$f" -H "If-None-Match: $etag"
  [[ $status == 304 && ! -s $work/body ]] || fail "/$f with its ETag: $status, $(wc -c <"$work/body") bytes"
  [[ $(header ETag) == "$etag" ]] || fail "/$f 304 lacks the ETag"
  get "/$f" -H 'If-None-Match: "something-else"'
  [[ $status == 200 ]] || fail "/$f with another ETag: $status"
done
get /app.js -I
[[ $status == 200 && $(header Content-Length) == $(wc -c <"$web_src/app.js") ]] ||
  fail "HEAD /app.js: $status, length $(header Content-Length)"
ok "each file with its type, an ETag, 304 when it matches; HEAD"

for p in /nothing.js /index.html/ //index.html /.hidden /../web/index.html "/%2e%2e/CMakeLists.txt"; do
  get "$p"
  [[ $status == 404 ]] || fail "GET $p answered $status"
done
get /index.html -X POST -H 'Content-Type: application/json' -d '{}'
[[ $status == 404 ]] || fail "POST /index.html answered $status"
ok "unknown and odd paths: 404"
stop_parleyd

# --- --web-root ---------------------------------------------------------------------------
root=$work/site
mkdir -p "$root/sub" "$work/outside"
printf '<!doctype html><title>from a folder</title>\n' >"$root/index.html"
printf 'body{}\n' >"$root/sub/page.css"
printf 'secret outside (hidden)\n' >"$root/.env"
printf 'secret outside\n' >"$work/outside/secret.txt"
ln -s "$work/outside/secret.txt" "$root/link.txt"
ln -s "$work/outside" "$root/out"
start_parleyd --web-root "$root"
wait_http
get /
[[ $status == 200 ]] && grep -q 'from a folder' "$work/body" || fail "--web-root /: $status $(cat "$work/body")"
get /sub/page.css
[[ $status == 200 && $(header Content-Type) == "text/css; charset=utf-8" ]] || fail "/sub/page.css: $status $(header Content-Type)"
[[ -n $(header Content-Security-Policy) && -n $(header ETag) ]] || fail "--web-root lacks headers: $(cat "$work/headers")"
etag=$(header ETag)
get /sub/page.css -H "If-None-Match: $etag"
[[ $status == 304 ]] || fail "--web-root revalidation: $status"
printf 'body{color:red}\n' >"$work/page.css.new"
touch -d '2000-01-01' "$work/page.css.new"
mv "$work/page.css.new" "$root/sub/page.css"
get /sub/page.css -H "If-None-Match: $etag"
[[ $status == 200 ]] && grep -q red "$work/body" || fail "an edited file is not served anew: $status"
ok "--web-root serves the folder, typed, with the same headers; an edit is seen at once"

for p in /../outside/secret.txt /sub/../../outside/secret.txt "/%2e%2e/outside/secret.txt" \
  "/sub/%2e%2e/%2e%2e/outside/secret.txt" "/..%2foutside%2fsecret.txt" /.env /link.txt \
  /out/secret.txt "/sub/..%5c..%5coutside%5csecret.txt" "$work/outside/secret.txt" "/sub/" /sub; do
  get "$p"
  [[ $status == 404 ]] || fail "GET $p answered $status"
  grep -q "secret outside" "$work/body" && fail "GET $p leaked the secret"
done
ok "--web-root refuses .., encoded .., hidden files, symbolic links out, folders"
stop_parleyd

# --- a --web-root that is no folder stops the start ------------------------------------------
if "$PARLEYD" --data-dir "$work/data2" --auth-listen "tcp://127.0.0.1:$(free_port)" \
  --rooms-listen "tcp://127.0.0.1:$(free_port)" --history-listen "tcp://127.0.0.1:$(free_port)" \
  --messaging-listen "tcp://127.0.0.1:$(free_port)" --events-listen inproc://w-ev \
  --room-events-listen inproc://w-rev --rooms-internal-listen inproc://w-rint \
  --http-listen "http://127.0.0.1:$(free_port)" --web-root "$work/nowhere" 2>"$work/err" >&2; then
  fail "parleyd started with --web-root at no folder"
fi
grep -q "web-root.*nowhere.*No such file" "$work/err" || fail "--web-root error: $(cat "$work/err")"
ok "--web-root at no folder: parleyd stops at start, naming it"
