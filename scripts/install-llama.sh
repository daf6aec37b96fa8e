#!/usr/bin/env bash
# Install llama-cpp-python built for portable x86-64 (AVX2, FMA, F16C), without AMX or
# AVX-512: a native build on CPUs that report AMX crashes in ggml_backend_amx_mul_mat
# inside virtual machines that do not grant AMX tile state (seen on this project's
# machines). pip caches the wheel, so a wheel cached from a native build is removed and
# rebuilt once.
set -euo pipefail
PIP=${PIP:-.venv/bin/pip}
PY=${PY:-.venv/bin/python}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
ARCH=$(uname -m)
if [ "$ARCH" = "x86_64" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
fi
portable() {
  "$PY" - <<'PY'
import sys
import llama_cpp
info = llama_cpp.llama_print_system_info().decode()
sys.exit(1 if "AMX_INT8 = 1" in info or "AVX512 = 1" in info else 0)
PY
}
"$PIP" install --quiet "llama-cpp-python[server]==$VERSION"
if [ "$ARCH" = "x86_64" ] && ! portable; then
  echo "llama-cpp-python was built natively (AMX/AVX-512); rebuilding portably (about 9 minutes)"
  "$PIP" cache remove 'llama_cpp_python*' >/dev/null 2>&1 || true
  "$PIP" install --quiet --force-reinstall --no-deps "llama-cpp-python==$VERSION"
  portable
fi
