#!/usr/bin/env bash
# The prepared GPU check (issue 15, item 7); see benchmarks/gpu_check.py for the parts and docs/PERFORMANCE.md
# ("GPU check") for how to run it on a lent device.
#
#   benchmarks/gpu_check.sh [OUT_DIR] [gpu_check.py options, e.g. --dry-run, --frames 10]
#
# OUT_DIR defaults to $OUT (the device machine's result folder), else ./gpu_check_out; gpu_check.json and
# gpu_check.log go there. The whole run keeps within GPU_CHECK_BUDGET_S seconds (default 470: the issue's 8 minutes
# less a margin): first the Python, then every part of gpu_check.py with its own time limit.
#
# Python: $GPU_CHECK_PYTHON if set; else ./.venv/bin/python when it imports the repository's packages; else a venv
# at $GPU_CHECK_VENV (default /tmp/meta_ood_gpu_venv) that sees the machine's python3 packages (torch, onnxruntime,
# ... through a .pth file) with the repository installed editable into it, offline (--no-index --no-deps
# --no-build-isolation); wheels found in ./.whl are installed into it first (packages the machine lacks, carried
# in). If the venv cannot be made, python3 runs the check with the repository on PYTHONPATH.
set -u
cd "$(dirname "$0")/.." || exit 2
budget=${GPU_CHECK_BUDGET_S:-470}
setup_limit=${GPU_CHECK_SETUP_S:-150}
out=${OUT:-gpu_check_out}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    out=$1
    shift
fi
mkdir -p "$out" || exit 2

repo_python_ok() {  # $1 imports both packages from this checkout
    "$1" -c 'import sys, pathlib, meta_ood_perception, meta_ood_training
here = pathlib.Path.cwd().resolve()
sys.exit(0 if here in pathlib.Path(meta_ood_perception.__file__).resolve().parents else 1)' 2>/dev/null
}

make_venv() {  # $1 base python, $2 venv folder
    local base=$1 venv=$2 site purelib
    "$base" -m venv --clear "$venv" || return 1
    site=$("$base" -c 'import site; print("\n".join(site.getsitepackages()))') || return 1
    purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
    printf '%s\n' "$site" >"$purelib/_gpu_check_base_site.pth"
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl || return 1
    fi
    "$venv/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir -e . || return 1
}

python=${GPU_CHECK_PYTHON:-}
if [ -z "$python" ] && [ -x .venv/bin/python ] && repo_python_ok .venv/bin/python; then
    python=.venv/bin/python
fi
if [ -z "$python" ]; then
    base=$(command -v python3) || { echo "gpu_check: no python3 on PATH" >&2; exit 2; }
    venv=${GPU_CHECK_VENV:-/tmp/meta_ood_gpu_venv}
    export -f make_venv
    if timeout "$setup_limit" bash -c "make_venv '$base' '$venv'" >"$out/setup.log" 2>&1 && repo_python_ok "$venv/bin/python"; then
        python=$venv/bin/python
    else
        echo "gpu_check: could not install the repository into $venv (see $out/setup.log); using $base with the" \
            "repository on PYTHONPATH" >&2
        shim=$(mktemp -d)
        ln -s "$PWD/training" "$shim/meta_ood_training"
        export PYTHONPATH="$PWD:$shim${PYTHONPATH:+:$PYTHONPATH}"
        python=$base
    fi
fi
left=$((budget - SECONDS))
[ "$left" -lt 0 ] && left=0
echo "gpu_check: python $python ($SECONDS s of set-up), $left s left for the parts" >&2
exec "$python" benchmarks/gpu_check.py --out "$out" --budget-s "$left" "$@"
