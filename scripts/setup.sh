# Installs what Causerie's build and tests need, and only what is missing: every step checks first, so running it
# again is quick. Sourced by scripts/run and scripts/test; not meant to be run on its own.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_LEPTOS_VERSION="0.3.10" # 0.3.11 needs a newer rustc than stable 1.95.
export PATH="$HOME/.cargo/bin:$ROOT/tools/node_modules/.bin:$PATH"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

require() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed. $2"
}

# Runs a command as root, through sudo when we are not root already.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else
    require sudo "Install $*, or run this as root."
    sudo "$@"
  fi
}

# `npm ci` in $1 unless its node_modules already match its package-lock.json.
npm_ci_if_needed() {
  local dir="$1"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "npm ci in ${dir#"$ROOT"/}"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
  fi
}

# The Rust toolchain pieces and cargo tools needed to build the app.
setup_build_tools() {
  require rustup "Install Rust with rustup: https://rustup.rs"
  require cargo "Install Rust with rustup: https://rustup.rs"
  require npm "Install Node.js 20 or newer with npm."

  # A C toolchain, make and perl: Rust links with cc, and cargo-leptos builds a vendored OpenSSL.
  if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1 || ! command -v perl >/dev/null 2>&1; then
    say "Installing a C toolchain (build-essential, perl)"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential perl
  fi

  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "Adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    say "Adding rustfmt and clippy"
    rustup component add rustfmt clippy
  fi

  if [ "$(cargo leptos --version 2>/dev/null)" != "cargo-leptos $CARGO_LEPTOS_VERSION" ]; then
    say "Installing cargo-leptos $CARGO_LEPTOS_VERSION (once; about 9 minutes)"
    # Built unoptimised: measured here, the install takes 9 min instead of 20 (26 with its LTO), and the tool's own
    # work in a release build (it mostly drives cargo, wasm-bindgen and wasm-opt) takes about 7 s longer.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_LTO=false \
      CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 CARGO_PROFILE_RELEASE_INCREMENTAL=false \
      cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
  fi

  # cargo-leptos runs the wasm-bindgen CLI on PATH, which must be the very version in Cargo.lock.
  local bindgen
  bindgen="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")"
  [ -n "$bindgen" ] || die "cannot find wasm-bindgen's version in Cargo.lock"
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen" ]; then
    say "Installing wasm-bindgen-cli $bindgen (once)"
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      cargo install wasm-bindgen-cli --version "$bindgen"
  fi

  # wasm-opt, for release builds, from npm's binaryen (Debian's is too old: the page would not hydrate).
  npm_ci_if_needed "$ROOT/tools"
}

# The release site and server as shipped: precompressed static files (the server sends their brotli or gzip twin),
# with the gzip twins at `gzip -9` (scripts/regzip-site). The browser tests get the same through `end2end-cmd`.
build_release_site() {
  (cd "$ROOT" && cargo leptos build --release --precompress)
  "$ROOT/scripts/regzip-site"
}

# What the tests need on top: Chromium for Playwright, and the Playwright package itself.
setup_test_tools() {
  if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
    say "Installing Debian's Chromium for the browser tests"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  fi
  setup_services
  npm_ci_if_needed "$ROOT/end2end"
  # The reference Node.js Socket.IO server that sio-client's conformance tests run against.
  npm_ci_if_needed "$ROOT/sio-client/conformance/peers/node"
  # The Node.js Socket.IO chat server that the benchmark's smoke run compares Causerie with.
  npm_ci_if_needed "$ROOT/bench/peers/node"
  # npm's socket.io-client, for the JavaScript example of docs/events.md, which a server test runs.
  npm_ci_if_needed "$ROOT/docs/examples"
}

# Postgres, Redis and nginx for the multi-node tests and benchmark (scripts/test-service starts them on free ports;
# the packages' own services are not needed). python3 finds the free ports.
setup_services() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "Installing ${missing[*]} for the multi-node tests"
    as_root apt-get update
    # Without starting their system services, which the tests do not use (nginx's would take port 80): Debian's
    # policy-rc.d says no to every service start while it exists.
    # In a subshell whose exit removes the policy again, even when the install fails or is interrupted.
    (
      policy=/usr/sbin/policy-rc.d
      if [ ! -e "$policy" ]; then
        trap 'as_root rm -f "$policy"' EXIT
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
      fi
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    )
  fi
}
