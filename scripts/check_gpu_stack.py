"""Check that a `pip install --dry-run --report` resolves a GPU extra to ONE CUDA major.

Usage: python scripts/check_gpu_stack.py REPORT.json [--expect 12|13]
       python scripts/check_gpu_stack.py --write-standins DIR   (see scripts/dry-run-gpu-extras)

Reads the report pip writes (no GPU, nothing installed) and names the CUDA major of every
package that carries one: a `-cuNN` suffix in its name (nvidia-cudnn-cu12, tensorrt-cu13-libs),
the CUDA Toolkit packages NVIDIA publishes without suffix from CUDA 13 on (their version's major),
and torch / onnxruntime-gpu through the CUDA packages they require. Exit 1 when more than one
major appears, when none does, or when it is not the expected one.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # a bare venv: pip carries its own copy
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement

# Unsuffixed CUDA Toolkit wheels whose version major is the CUDA major (cufft, curand, cusolver,
# cusparse, cufile keep their own library versions, so they are judged by who requires them).
VERSIONED_LIKE_CUDA = {"nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cublas", "nvidia-cuda-cupti",
                       "nvidia-nvjitlink", "nvidia-nvtx", "cuda-toolkit", "cuda-bindings"}
SUFFIX = re.compile(r"-cu(\d{2})(?:-|$)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def package_major(name: str, version: str) -> int | None:
    """The CUDA major a package is built for, from its name or version; None when it has none."""
    found = SUFFIX.search(normalize(name))
    if found:
        return int(found.group(1))
    if normalize(name) in VERSIONED_LIKE_CUDA:
        return int(version.split(".")[0])
    return None


def required_majors(requires: list[str]) -> set[int]:
    """CUDA majors named by a package's requirements (any extra): torch's and onnxruntime-gpu's."""
    majors = set()
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        name = normalize(requirement.name)
        suffix = SUFFIX.search(name)
        if suffix and name.startswith("nvidia-"):
            majors.add(int(suffix.group(1)))
        elif name in VERSIONED_LIKE_CUDA:
            # the lower bound or the pin names the major; an upper bound like <14 does not
            majors.update(int(spec.version.split(".")[0]) for spec in requirement.specifier if spec.operator in ("==", "===", "~=", ">="))
    return majors


def classify(report: dict) -> list[tuple[str, str, int | None, str]]:
    """(name, version, CUDA major or None, why) for every package pip would install."""
    rows = []
    for item in report["install"]:
        meta = item["metadata"]
        name, version = meta["name"], meta["version"]
        major = package_major(name, version)
        why = "name or version" if major is not None else ""
        if major is None and normalize(name) in ("torch", "onnxruntime-gpu"):
            majors = required_majors(meta.get("requires_dist") or [])
            if len(majors) == 1:
                major, why = majors.pop(), "its CUDA requirements"
            elif majors:
                return rows + [(name, version, -1, f"requires several CUDA majors: {sorted(majors)}")]
        rows.append((name, version, major, why))
    return rows


# tensorrt-cuNN-libs is a placeholder sdist on PyPI whose metadata step downloads the real wheel
# from NVIDIA's own index. Where that index is unreachable, a dry run can resolve everything else
# against a metadata-only stand-in carrying the real wheel's one requirement, as NVIDIA's
# python/packaging/libs_wheel/setup.py declares it: the CUDA runtime of the same major.
STANDIN_TENSORRT_VERSIONS = ("10.16.1.11", "10.16.0.72")


def write_standins(directory: str | Path, versions=STANDIN_TENSORRT_VERSIONS) -> list[Path]:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for major in (12, 13):
        for version in versions:
            name = f"tensorrt_cu{major}_libs"
            dist_info = f"{name}-{version}.dist-info"
            files = {
                f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: tensorrt-cu{major}-libs\nVersion: {version}\n"
                                         f"Summary: stand-in (metadata only) for a dry run\n"
                                         f"Requires-Dist: cuda-toolkit[cudart]<{major + 1},>={major}\n",
                f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: check_gpu_stack\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            }
            record = "".join(
                f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},{len(text.encode())}\n"
                for path, text in files.items())
            files[f"{dist_info}/RECORD"] = record + f"{dist_info}/RECORD,,\n"
            wheel = out / f"{name}-{version}-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as archive:
                for path, text in files.items():
                    archive.writestr(path, text)
            written.append(wheel)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?")
    parser.add_argument("--expect", type=int, choices=(12, 13))
    parser.add_argument("--write-standins", metavar="DIR")
    args = parser.parse_args(argv)
    if args.write_standins:
        for wheel in write_standins(args.write_standins):
            print(wheel)
        return 0
    if not args.report:
        parser.error("REPORT.json is required")
    with open(args.report, encoding="utf-8") as handle:
        rows = classify(json.load(handle))
    cuda_rows = [r for r in rows if r[2] is not None]
    width = max((len(r[0]) for r in cuda_rows), default=10)
    for name, version, major, why in sorted(cuda_rows):
        print(f"{name:<{width}}  {version:<14}  CUDA {major}  ({why})")
    majors = sorted({r[2] for r in cuda_rows})
    key = {normalize(r[0]): r for r in rows}
    for wanted in ("torch", "onnxruntime-gpu"):
        if wanted in key and key[wanted][2] is None:
            print(f"{wanted} {key[wanted][1]}: no CUDA requirement (a CPU build?)")
            majors.append(0)
    if len(set(majors)) != 1 or (args.expect and majors[0] != args.expect):
        print(f"FAIL: CUDA majors {sorted(set(majors))}" + (f", expected {args.expect}" if args.expect else ""))
        return 1
    print(f"OK: one CUDA major ({majors[0]}) across {len(cuda_rows)} CUDA packages of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
