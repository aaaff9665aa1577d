#!/usr/bin/env bash
# The wheels tools/gpu_check.sh installs on the GPU machine, which reaches no package registry: fetched
# here into .whl/ (git-ignored), for that machine's Python, and checked against what the device tool
# carries with the working tree (64 MiB in all).
#
#   tools/gpu_wheels.sh           fetch them (again), recompress, write .whl/MANIFEST.json, check sizes
#   tools/gpu_wheels.sh --check   no download: list .whl/, refresh the manifest's record of the tree
#                                 (commit, changed files, size) and check sizes; run it just before the call
#
# Environment: PY_VERSION (default 3.12: python3 on the nvidia-h200 machine is 3.12.3, per the
# device tool's notes), PYTHON (the interpreter whose pip downloads; default .venv/bin/python).
#
# Which wheels: what vidinfer's GPU path imports that the machine's image lacks (the device tool's notes list the
# image): PyNvVideoCodec (NVDEC), PyAV (vidinfer's demuxer, and the check's reference decoder and clip
# encoder), pyzmq and pydantic with its dependencies (`import vidinfer` needs both). Not brought:
# rapidfuzz and rapidocr-onnxruntime (brand analytics and OCR only, imported on first use), TensorRT
# and onnxruntime-gpu (hundreds of MiB each; the check runs inference through ONNX Runtime on the CPU).
#
# Each wheel is rewritten with LZMA compression (ZIP method 14, which pip reads through Python's
# zipfile): same file name, same files, same RECORD hashes (those are of the uncompressed contents),
# about a quarter smaller (PyAV 34 -> 26 MiB). Budget: wheels at most 60 MiB, wheels plus the rest of
# the tree at most 63 MiB; over it the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION="${PY_VERSION:-3.12}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
REQUIREMENTS=(
  "PyNvVideoCodec==2.2.4"
  "av==18.1.0"
  "pyzmq==27.3.0"
  "pydantic==2.14.4"
  "pydantic-core==2.50.5"
  "annotated-types==0.8.0"
  "typing-inspection==0.4.5"
  "typing-extensions==4.16.0"
)
mkdir -p .whl
if [ "${1:-}" != "--check" ]; then
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_24_x86_64 \
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
  done
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${platforms[@]}" -d "$dl" "${REQUIREMENTS[@]}"
  rm -f .whl/*.whl
  DOWNLOADED="$dl" PY_VERSION="$PY_VERSION" "$PYTHON" - "${REQUIREMENTS[@]}" <<'PYEOF'
import hashlib, json, os, sys, zipfile
from pathlib import Path

src_dir, out_dir = Path(os.environ["DOWNLOADED"]), Path(".whl")
records = []
for src in sorted(src_dir.glob("*.whl")):
    dst = out_dir / src.name
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            new = zipfile.ZipInfo(info.filename, info.date_time)
            new.external_attr, new.create_system = info.external_attr, info.create_system
            new.compress_type = zipfile.ZIP_LZMA
            zout.writestr(new, zin.read(info))
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst) as b:  # same members, same contents
        assert b.testzip() is None, dst
        assert [(i.filename, i.CRC) for i in a.infolist()] == [(i.filename, i.CRC) for i in b.infolist()], dst
    name = src.name.split("-")[0].lower().replace("_", "-")
    req = next(r for r in sys.argv[1:] if r.split("==")[0].lower().replace("_", "-") == name)
    records.append({"file": dst.name, "requirement": req, "bytes": dst.stat().st_size,
                    "original_bytes": src.stat().st_size,
                    "sha256": hashlib.sha256(dst.read_bytes()).hexdigest()})
missing = [r for r in sys.argv[1:] if not any(x["requirement"] == r for x in records)]
assert not missing, f"not downloaded: {missing}"
manifest = {"python_version": os.environ["PY_VERSION"], "wheels": records}
(out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
PYEOF
fi
"$PYTHON" - <<'PYEOF'
import json, subprocess, sys
from pathlib import Path

MiB = 1 << 20
WHEELS_MAX, TREE_MAX = 60 * MiB, 63 * MiB
manifest_path = Path(".whl/MANIFEST.json")
if not manifest_path.is_file():
    sys.exit("no .whl/MANIFEST.json: run tools/gpu_wheels.sh (without --check) first")
manifest = json.loads(manifest_path.read_text())
listed = {w["file"] for w in manifest["wheels"]}
present = {p.name for p in Path(".whl").glob("*.whl")}
if listed != present:
    sys.exit(f".whl/ does not hold what MANIFEST.json lists: missing {sorted(listed - present)}, "
             f"extra {sorted(present - listed)}; run tools/gpu_wheels.sh again")


def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


# What travels besides the carried .whl: tracked and untracked-but-not-ignored files.
files = [Path(p) for p in git("ls-files", "-co", "--exclude-standard", "-z").split("\0") if p]
tree = sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())
wheels = sum((Path(".whl") / w).stat().st_size for w in listed) + manifest_path.stat().st_size
manifest["tree"] = {"commit": git("rev-parse", "HEAD").strip() or None,
                    "changed_files": git("status", "--short").splitlines(), "bytes": tree}
manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
print(f"{'wheel (for Python ' + manifest['python_version'] + ')':<78} {'MiB':>6} {'was':>6}")
for w in manifest["wheels"]:
    print(f"{w['file']:<78} {w['bytes'] / MiB:6.2f} {w['original_bytes'] / MiB:6.2f}")
print(f"{'wheels together':<78} {wheels / MiB:6.2f}   (at most {WHEELS_MAX // MiB})")
print(f"{'the rest of the working tree (' + str(len(files)) + ' files)':<78} {tree / MiB:6.2f}")
print(f"{'all that travels':<78} {(wheels + tree) / MiB:6.2f}   (at most {TREE_MAX // MiB}; the device tool's limit is 64)")
if wheels > WHEELS_MAX or wheels + tree > TREE_MAX:
    sys.exit("over budget: bring fewer wheels, or leave large untracked files out of the tree")
PYEOF
