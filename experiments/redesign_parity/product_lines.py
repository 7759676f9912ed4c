"""Product lines at each given commit: all lines and code lines (no blank, comment or docstring lines) of the
`*.py` files under vtg/, data/, train/, eval/ and serve/.

    python3 experiments/redesign_parity/product_lines.py 1e93e7b fbb1b19 HEAD
"""

import ast
import io
import subprocess
import sys
import tokenize

FOLDERS = ["vtg", "data", "train", "eval", "serve"]
SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def docstring_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(src: str) -> int:
    docs = docstring_lines(ast.parse(src))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in SKIP:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(lines)


def count(commit: str) -> tuple[int, int]:
    files = [f for f in git("ls-tree", "-r", "--name-only", commit, "--", *FOLDERS).split() if f.endswith(".py")]
    total = code = 0
    for f in files:
        src = git("show", f"{commit}:{f}")
        total += len(src.splitlines())
        code += code_lines(src)
    return total, code


if __name__ == "__main__":
    for commit in sys.argv[1:]:
        total, code = count(commit)
        print(f"{commit}: {total} lines, {code} code lines")
