#!/usr/bin/env python3
"""Checks the generated Swift bindings and the Swift facade without a Swift toolchain.

1. uniffi-bindgen produced the three files the package needs (Swift, C header, module map).
2. Every C symbol the generated Swift calls is declared in the generated header.
3. Every generated symbol the facade uses (written `VitalcoreFFI.name`) exists, with the
   argument labels the facade passes, and `VitalcoreFFI.Type.member` names a member of Type
   (with the labels passed, when it is called).
4. Method calls on the facade's generated objects: a property declared
   `let name: VitalcoreFFI.Type` makes every `name.method(...)` in that file a checked use
   (the method exists on Type, with the argument labels passed).
5. Package.swift names the modules the generator produced.

What this cannot see: Swift type checking, overload resolution, `async`/`throws` mismatches.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

MODULE = "VitalcoreFFI"
FFI_MODULE = "vitalcore_ffiFFI"


def strip_comments_and_strings(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', src)


def top_level_decls(swift: str) -> dict[str, str]:
    """Public top-level declarations: name -> kind (func, struct, enum, protocol, class)."""
    decls: dict[str, str] = {}
    for m in re.finditer(
        r"^(?:public|open)\s+(?:final\s+)?(func|struct|enum|protocol|class|typealias)\s+(\w+)", swift, re.M
    ):
        decls.setdefault(m.group(2), m.group(1))
    return decls


def func_labels(swift: str) -> dict[str, list[list[str]]]:
    """Argument labels of every public top-level function (a name may be overloaded)."""
    out: dict[str, list[list[str]]] = {}
    for m in re.finditer(r"^public func (\w+)\(([^)]*)\)", swift, re.M):
        params = [p.strip() for p in m.group(2).split(",") if p.strip()]
        labels = []
        for p in params:
            head = p.split(":")[0].split()
            labels.append("_" if head[0] == "_" else head[0])
        out.setdefault(m.group(1), []).append(labels)
    return out


def member_labels(body: str) -> dict[str, list[list[str]]]:
    """Argument labels of the methods (and static functions) declared in a type body."""
    out: dict[str, list[list[str]]] = {}
    for m in re.finditer(r"^\s*(?:open|public)\s+(?:static\s+)?func\s+`?(\w+)`?\(([^)]*)\)", body, re.M):
        params = [p.strip() for p in m.group(2).split(",") if p.strip()]
        out.setdefault(m.group(1), []).append(["_" if p.split(":")[0].split()[0] == "_" else p.split(":")[0].split()[0] for p in params])
    return out


def type_body(swift: str, name: str) -> str:
    m = re.search(rf"^(?:public|open)\s+(?:final\s+)?(?:struct|enum|protocol|class)\s+{name}\b[^{{]*\{{", swift, re.M)
    if not m:
        return ""
    depth, i = 1, m.end()
    while depth and i < len(swift):
        depth += {"{": 1, "}": -1}.get(swift[i], 0)
        i += 1
    return swift[m.end() : i]


def call_labels(src: str, start: int) -> list[str]:
    """Labels of the call whose '(' is at src[start]."""
    depth, i, args, cur = 0, start, [], ""
    while i < len(src):
        c = src[i]
        if c in "([{":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and c == ",":
            args.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        args.append(cur)
    labels = []
    for a in args:
        m = re.match(r"\s*(\w+)\s*:(?!:)", a)
        labels.append(m.group(1) if m else "_")
    return labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", type=Path, required=True)
    ap.add_argument("--facade", type=Path, required=True)
    ap.add_argument("--package", type=Path, default=Path(__file__).resolve().parents[1] / "Package.swift")
    args = ap.parse_args()
    problems: list[str] = []
    checks = 0

    files = {p: args.generated / p for p in (f"{MODULE}.swift", f"{FFI_MODULE}.h", f"{FFI_MODULE}.modulemap")}
    for name, path in files.items():
        checks += 1
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"bindgen did not produce {name}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    swift = files[f"{MODULE}.swift"].read_text()
    header = files[f"{FFI_MODULE}.h"].read_text()
    checks += 1
    if f"module {FFI_MODULE}" not in files[f"{FFI_MODULE}.modulemap"].read_text():
        problems.append(f"module map does not define {FFI_MODULE}")

    c_used = set(re.findall(r"\b(uniffi_vitalcore_ffi_\w+|ffi_vitalcore_ffi_\w+)\b", swift))
    c_declared = set(re.findall(r"\b(uniffi_vitalcore_ffi_\w+|ffi_vitalcore_ffi_\w+)\s*\(", header))
    checks += len(c_used)
    problems += [f"Swift calls {s} which the header does not declare" for s in sorted(c_used - c_declared)]
    if not c_used:
        problems.append("generated Swift calls no scaffolding function at all")

    decls = top_level_decls(strip_comments_and_strings(swift))
    labels = func_labels(swift)
    used = 0
    for path in sorted(args.facade.rglob("*.swift")):
        src = strip_comments_and_strings(path.read_text())
        for m in re.finditer(rf"\b{MODULE}\.(\w+)(?:\.(\w+))?", src):
            used += 1
            checks += 1
            name, member = m.group(1), m.group(2)
            where = f"{path.name}:{src.count(chr(10), 0, m.start()) + 1}"
            if name not in decls:
                problems.append(f"{where}: {MODULE}.{name} is not a public declaration of the generated module")
                continue
            if member:
                body = type_body(swift, name)
                if not re.search(rf"\b(?:case|func|var|let|init)\s+`?{member}\b", body):
                    problems.append(f"{where}: {name} has no member {member}")
                    continue
                after = src[m.end() :]
                methods = member_labels(body)
                if member in methods and after.lstrip().startswith("("):
                    got = call_labels(src, m.end() + (len(after) - len(after.lstrip())))
                    if got not in methods[member]:
                        problems.append(f"{where}: {name}.{member}({', '.join(got)}) matches no generated signature {methods[member]}")
                continue
            after = src[m.end() :]
            if decls[name] == "func" and after.lstrip().startswith("("):
                paren = m.end() + (len(after) - len(after.lstrip()))
                got = call_labels(src, paren)
                if got not in labels.get(name, []):
                    problems.append(f"{where}: {name}({', '.join(got)}) matches no generated signature {labels.get(name)}")
        for d in re.finditer(rf"\b(?:let|var)\s+(\w+)\s*:\s*{MODULE}\.(\w+)\b", src):
            prop, typ = d.group(1), d.group(2)
            methods = member_labels(type_body(swift, typ))
            # The property's scope: from its declaration to the next top-level declaration.
            nxt = re.compile(r"^(?:public\s+|open\s+)?(?:final\s+)?(?:class|struct|enum|extension|func)\b", re.M).search(src, d.end())
            end = nxt.start() if nxt else len(src)
            for m in re.finditer(rf"\b{prop}\.(\w+)\s*\(", src[: end]):
                if m.start() < d.end():
                    continue
                used += 1
                checks += 1
                where = f"{path.name}:{src.count(chr(10), 0, m.start()) + 1}"
                if m.group(1) not in methods:
                    problems.append(f"{where}: {typ} has no method {m.group(1)}")
                    continue
                got = call_labels(src, m.end() - 1)
                if got not in methods[m.group(1)]:
                    problems.append(f"{where}: {typ}.{m.group(1)}({', '.join(got)}) matches no generated signature {methods[m.group(1)]}")
    checks += 1
    if used == 0:
        problems.append(f"the facade uses no {MODULE} symbol: nothing was checked")

    package = args.package.read_text()
    for needle in (f'name: "{FFI_MODULE}"', f'name: "{MODULE}"'):
        checks += 1
        if needle not in package:
            problems.append(f"Package.swift lacks target {needle}")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"swift-gen: {checks - len(problems)} passed, {len(problems)} failed")
        return 1
    print(f"swift-gen: {checks} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
