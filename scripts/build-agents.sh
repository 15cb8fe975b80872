#!/usr/bin/env bash
# Build the example agents (examples/agents/*.c) into .wasm modules with clang + the C SDK.
#
#   scripts/build-agents.sh [OUT_DIR]     (or OUT_DIR=... scripts/build-agents.sh)
#
# Output goes next to the sources unless OUT_DIR is given. Runnable from any directory,
# idempotent (the same sources give the same bytes). A source with a line
# `// caxton-mode: command` is built as a WASI command agent (main/_start, with
# -DCAXTON_COMMAND=1); every other source as a reactor agent (caxton_handle).
#
# Memory: a 16 KiB shadow stack (-z stack-size) instead of clang's 64 KiB default, and
# wasm-ld's computed minimum initial memory (static data + stack, rounded up to whole
# 64 KiB pages): 1 page (64 KiB) for each example, so thousands of idle agents fit.
# The heap grows with memory.grow on demand. No maximum is set here: the runtime
# enforces the memory limit. Needs: clang, lld (wasm-ld) and wasi-libc (Debian packages
# `clang lld wasi-libc`; clang >= 14 also needs `libclang-rt-14-dev-wasm32`, or the
# package of your clang version, for the compiler-rt builtins).
#
# Rust examples (examples/agents/rust/<name>/, a cargo workspace with the SDK in sdk/rust) are
# built into <OUT_DIR>/rust/<name>.wasm: see the "Rust examples" block at the end.
set -euo pipefail

case "${BASH_SOURCE[0]}" in
*/*) here="${BASH_SOURCE[0]%/*}" ;;
*) here=. ;;
esac
here="$(cd "$here" && pwd)"
root="$(cd "$here/.." && pwd)"
src_dir="$root/examples/agents"
sdk_dir="$root/sdk/c"
out_dir="${1:-${OUT_DIR:-$src_dir}}"
CC="${CC:-clang}"

die() {
    echo "build-agents: $*" >&2
    exit 1
}

command -v "$CC" >/dev/null 2>&1 ||
    die "'$CC' not found. Install the toolchain: sudo apt-get install clang lld wasi-libc"
command -v wasm-ld >/dev/null 2>&1 || command -v "wasm-ld-$("$CC" -dumpversion | cut -d. -f1)" >/dev/null 2>&1 ||
    die "wasm-ld (the WebAssembly linker) not found. Install it: sudo apt-get install lld"

mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Probe the wasi sysroot once, with a program that needs libc, so a missing piece is
# reported in words instead of as a linker error per agent.
printf '#include <stdlib.h>\n#include <stdio.h>\nint main(void){char b[8];return snprintf(b,8,"%%d",(int)strtol("1",0,10))<0;}\n' >"$work/probe.c"
if ! "$CC" --target=wasm32-wasi -O2 -o "$work/probe.wasm" "$work/probe.c" 2>"$work/probe.err"; then
    cat "$work/probe.err" >&2
    die "clang cannot build for wasm32-wasi: the WASI sysroot or compiler-rt builtins are missing. Install: sudo apt-get install clang lld wasi-libc libclang-rt-$("$CC" -dumpversion | cut -d. -f1)-dev-wasm32"
fi

common=(--target=wasm32-wasi -O2 -std=c11 -Wall -Wextra -Werror -I "$sdk_dir"
    -Wl,--strip-all -Wl,-z,stack-size=16384)

shopt -s nullglob
sources=("$src_dir"/*.c)
[ ${#sources[@]} -gt 0 ] || die "no agent sources in $src_dir"

for src in "${sources[@]}"; do
    name="$(basename "$src" .c)"
    if grep -q '^// caxton-mode: command' "$src"; then
        mode=command
        extra=(-mexec-model=command -DCAXTON_COMMAND=1)
    else
        mode=reactor
        extra=(-mexec-model=reactor)
    fi
    # Build into the scratch dir, then move: an interrupted build never leaves a
    # truncated .wasm behind.
    "$CC" "${common[@]}" "${extra[@]}" -o "$work/$name.wasm" "$src"
    mv -f "$work/$name.wasm" "$out_dir/$name.wasm"
    size=$(wc -c <"$out_dir/$name.wasm")
    echo "built $out_dir/$name.wasm ($mode, $size bytes)"
done

# ---- AssemblyScript examples -----------------------------------------------------------------
# examples/agents/assemblyscript/*.ts, built with the SDK's preset (sdk/assemblyscript/
# asconfig.json, extended by examples/agents/assemblyscript/asconfig.json) into
# OUT_DIR/assemblyscript/. The compiler version is pinned by
# sdk/assemblyscript/package-lock.json and installed there with `npm ci` when missing (Debian:
# `sudo apt-get install npm`). Without node and npm this part is skipped with a note;
# CAXTON_BUILD_AS=0 skips it too.
as_src="$root/examples/agents/assemblyscript"
as_sdk="$root/sdk/assemblyscript"
as_sources=("$as_src"/*.ts)
if [ "${CAXTON_BUILD_AS:-1}" = 0 ] || [ ${#as_sources[@]} -eq 0 ]; then
    :
elif ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "build-agents: node/npm not found: AssemblyScript examples not built (sudo apt-get install npm)" >&2
else
    as_pinned="$(node -p "require('$as_sdk/package.json').devDependencies.assemblyscript")"
    as_have="$(node -p "try { require('$as_sdk/node_modules/assemblyscript/package.json').version } catch (e) { '' }")"
    if [ "$as_have" != "$as_pinned" ]; then
        echo "installing AssemblyScript $as_pinned (npm ci in $as_sdk)"
        (cd "$as_sdk" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
            die "npm ci failed in $as_sdk (is the npm registry reachable?)"
    fi
    mkdir -p "$out_dir/assemblyscript"
    for src in "${as_sources[@]}"; do
        name="$(basename "$src" .ts)"
        # Run in the sources' directory: asc reads its asconfig.json there, which extends the
        # SDK's preset (relative paths: asc resolves the preset's lib/ against them).
        (cd "$as_src" && "$as_sdk/node_modules/.bin/asc" "$name.ts" -o "$work/$name.wasm")
        mv -f "$work/$name.wasm" "$out_dir/assemblyscript/$name.wasm"
        size=$(wc -c <"$out_dir/assemblyscript/$name.wasm")
        echo "built $out_dir/assemblyscript/$name.wasm (assemblyscript reactor, $size bytes)"
    done
fi

# ---- Rust examples (begin) ---------------------------------------------------------------
# examples/agents/rust/*/ -> <OUT_DIR>/rust/<name>.wasm, with cargo, offline. Debian 12:
# `apt-get install rustc cargo libstd-rust-dev-wasm32 lld librust-serde-json-dev` (rustc 1.63,
# target wasm32-wasi). /usr/bin/cargo is preferred over a rustup one earlier in PATH (rustup
# toolchains here have no wasm target); CARGO and RUSTC choose another toolchain, whose target
# is wasm32-wasip1 if it knows it. Without cargo the Rust examples are skipped, saying so.
rust_dir="$src_dir/rust"
if [ -d "$rust_dir" ]; then
    if [ -z "${CARGO:-}" ] && [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ]; then
        CARGO=/usr/bin/cargo
        RUSTC="${RUSTC:-/usr/bin/rustc}"
    fi
    CARGO="${CARGO:-cargo}"
    RUSTC="${RUSTC:-rustc}"
    if ! command -v "$CARGO" >/dev/null 2>&1; then
        echo "build-agents: cargo not found: Rust examples skipped. Install: sudo apt-get install rustc cargo libstd-rust-dev-wasm32 lld librust-serde-json-dev" >&2
    else
        if "$RUSTC" --print target-list | grep -qx wasm32-wasip1; then
            rust_target=wasm32-wasip1
        else
            rust_target=wasm32-wasi
        fi
        # The modules must not depend on where the checkout is: cargo derives a path
        # dependency's symbol hashes from its absolute path, and the linker lays the module out
        # in symbol order. So the sources are built from one fixed directory (one build at a
        # time, under a lock), with that prefix remapped (panic locations name source files).
        fixed=/tmp/caxton-rust-build
        exec 9>"$fixed.lock"
        flock 9
        rm -rf "$fixed"
        mkdir -p "$fixed"
        tar -C "$root" --exclude=target -cf - sdk/rust examples/agents/rust | tar -C "$fixed" -xf -
        # The same flags as .cargo/config.toml, plus the remapped prefix.
        rust_flags="-C link-arg=-zstack-size=32768 --remap-path-prefix=$fixed=/caxton"
        if ! (cd "$fixed/examples/agents/rust" && RUSTC="$RUSTC" RUSTFLAGS="$rust_flags" CARGO_TARGET_DIR="$work/rust" \
            "$CARGO" build --quiet --release --target "$rust_target" 2>"$work/rust.err"); then
            cat "$work/rust.err" >&2
            die "cargo could not build the Rust examples for $rust_target. On Debian 12: sudo apt-get install rustc cargo libstd-rust-dev-wasm32 lld librust-serde-json-dev (with rustup: rustup target add wasm32-wasip1)"
        fi
        mkdir -p "$out_dir/rust"
        for crate in "$rust_dir"/*/Cargo.toml; do
            name="$(basename "$(dirname "$crate")")"
            mv -f "$work/rust/$rust_target/release/$name.wasm" "$out_dir/rust/$name.wasm"
            size=$(wc -c <"$out_dir/rust/$name.wasm")
            echo "built $out_dir/rust/$name.wasm (rust reactor, $rust_target, $size bytes)"
        done
        rm -rf "$fixed"
        exec 9>&-
    fi
fi
# ---- Rust examples (end) -----------------------------------------------------------------
